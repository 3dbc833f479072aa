/* What the C kernels of stftblur share: the status codes every entry returns and the export
   macro. The kernels are built by stftblur/_native.py (plain C, loaded with ctypes) with
   -fvisibility=hidden: only the STFTBLUR_API functions are visible.

   Status codes (mirrored in stftblur/_native.py, which raises on anything but STFTBLUR_OK):
     STFTBLUR_OK      the call did its work;
     STFTBLUR_EINVAL  a size, index or pointer is impossible (the Python entries check the
                      tensors before calling, so this is a second line of defence);
     STFTBLUR_ENOMEM  a scratch allocation failed: nothing was skipped, the caller raises. */
#ifndef STFTBLUR_NATIVE_H
#define STFTBLUR_NATIVE_H

#include <stdint.h>

#define STFTBLUR_API __attribute__((visibility("default")))

/* Helpers of a vectorized loop: inlined whatever the compiler's inlining budget (in a large
   translation unit, such as a C++ extension that includes PyTorch's headers, GCC otherwise
   leaves atan2 as a call and the loop scalar, 9x slower). */
#define STFTBLUR_INLINE static inline __attribute__((always_inline))

#define STFTBLUR_OK 0
#define STFTBLUR_EINVAL 1
#define STFTBLUR_ENOMEM 2

#endif
