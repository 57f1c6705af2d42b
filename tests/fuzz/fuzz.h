/* fuzz.h: what the fuzz targets under tests/fuzz/ share. Each target is
 * one .c with LLVMFuzzerTestOneInput; `make fuzz` links it with libFuzzer
 * (clang), and `make test` links it with tests/fuzz/replay.c (gcc, ASan,
 * UBSan) to run every file of its corpus once.
 *
 * fz_split: a copy of the input, NUL-terminated, read as NUL-separated
 * strings: fz_next gives the next one ("" once the input is used up), so
 * a target reads several texts out of one input and the fuzzer learns
 * where they part. */
#ifndef LEADSYNC_FUZZ_H
#define LEADSYNC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
	char *buf; /* size + 1 bytes */
	size_t size, at;
};

static inline int fz_open(struct fz *f, const uint8_t *data, size_t size)
{
	f->buf = malloc(size + 1);
	if (!f->buf)
		return -1;
	if (size)
		memcpy(f->buf, data, size);
	f->buf[size] = '\0';
	f->size = size;
	f->at = 0;
	return 0;
}

/* The next NUL-terminated piece; "" at the end. */
static inline const char *fz_next(struct fz *f)
{
	const char *s;

	if (f->at >= f->size)
		return f->buf + f->size;
	s = f->buf + f->at;
	f->at += strlen(s) + 1;
	return s;
}

/* The next byte as a number; 0 at the end. */
static inline unsigned fz_byte(struct fz *f)
{
	if (f->at >= f->size)
		return 0;
	return (unsigned char)f->buf[f->at++];
}

/* What is left, as bytes (may hold NULs). */
static inline const char *fz_rest(struct fz *f, size_t *n)
{
	const char *s = f->buf + (f->at < f->size ? f->at : f->size);

	*n = f->at < f->size ? f->size - f->at : 0;
	f->at = f->size;
	return s;
}

static inline void fz_close(struct fz *f)
{
	free(f->buf);
	f->buf = NULL;
}

#endif
