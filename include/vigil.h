/* vigil.h - C API of vigil (libvigil). */
#ifndef VIGIL_H
#define VIGIL_H

#include <stdint.h>

#define VIGIL_VERSION_MAJOR 0
#define VIGIL_VERSION_MINOR 1
#define VIGIL_VERSION_PATCH 0
#define VIGIL_VERSION_NUMBER (VIGIL_VERSION_MAJOR * 1000000 + VIGIL_VERSION_MINOR * 1000 + VIGIL_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version, encoded as VIGIL_VERSION_NUMBER. Thread-safe. */
uint32_t vigil_version_number(void);

#ifdef __cplusplus
}
#endif

#endif /* VIGIL_H */
