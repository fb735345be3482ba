/*
 * MOELAT_API marks what libmoelat exports. The library is built with
 * hidden visibility by default, so a function without it stays internal
 * (`nm -D --defined-only libmoelat.so` lists only moelat_* symbols).
 */
#ifndef MOELAT_API_H
#define MOELAT_API_H

#if defined(_WIN32)
#define MOELAT_API
#elif defined(__GNUC__) || defined(__clang__)
#define MOELAT_API __attribute__((visibility("default")))
#else
#define MOELAT_API
#endif

#endif /* MOELAT_API_H */
