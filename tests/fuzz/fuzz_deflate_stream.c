/*
 * Fuzzes the raw deflate stream (protocol/deflate_stream.c).
 *
 * Input: [config][seed][bytes...]; the seed byte also picks the level.  The
 * bytes are read as wire bytes by a decoder fed in chunks that config and seed
 * choose, and by a second decoder in one call: both must agree (same output, or
 * the same error), an error must leave out unchanged and stay, and a call must
 * never append more than max_output.  Then the bytes are compressed in
 * input-chosen pieces and must decode back to themselves, whatever the
 * chunking.  Every appended byte is read, so ASan sees a bad write.
 */
#define KIND NSQ_STREAM_DEFLATE
/* The seed byte also picks the level, 1..9. */
#define FUZZ_LEVEL(b) (1 + (b) % 9)

#include "stream_fuzz.h"
