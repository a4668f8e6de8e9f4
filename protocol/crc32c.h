/* CRC-32C (Castagnoli), the checksum of snappy's framing format. */
#ifndef NSQ_CRC32C_H
#define NSQ_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * Extends crc (0 for a fresh checksum) over len bytes: the CRC-32C of a
 * concatenation is the update of the first part's CRC by the second part.
 * Thread-safe: the tables are constant.
 */
uint32_t nsq__crc32c(uint32_t crc, const void *data, size_t len);

/* snappy's masked form of a CRC: rotated right by 15 plus a constant, so a
 * checksum of data that holds its own checksum is not trivially zero. */
uint32_t nsq__crc32c_mask(uint32_t crc);

#endif
