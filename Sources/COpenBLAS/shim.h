// OpenBLAS's CBLAS interface (Debian libopenblas-dev), for the FP32 baseline of the inference path.
// Only the Inference module imports this.
#ifndef LOWBIT_COPENBLAS_SHIM_H
#define LOWBIT_COPENBLAS_SHIM_H

#include <cblas.h>

#endif
