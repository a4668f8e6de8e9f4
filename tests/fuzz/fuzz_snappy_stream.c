/*
 * Fuzzes the snappy framing stream (protocol/snappy_stream.c).
 *
 * Input: [config][seed][bytes...].  The bytes are read as wire bytes by a
 * decoder fed in chunks that config and seed choose, and by a second decoder
 * in one call: both must agree (same output, or the same error), an error
 * must leave out unchanged and stay, and a call must never append more than
 * max_output.  Then the bytes are compressed in input-chosen pieces and must
 * decode back to themselves, whatever the chunking.  Every appended byte is
 * read, so ASan sees a bad write.
 */
#define KIND NSQ_STREAM_SNAPPY
/* snappy has no level. */
#define FUZZ_LEVEL(b) ((void)(b), 0)

#include "stream_fuzz.h"
