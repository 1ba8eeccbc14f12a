// Conversion of a row-major matrix into MatrixLayout::kPanels (see kernel_args.h). Done once at
// load, so every decode step streams weights in the order the product consumes them.
#pragma once

#include "engine/kernels/kernel_args.h"

namespace retain::kernels {

// dst holds StoredElements(kPanels, rows, cols) elements of `dtype`; padding rows become zeros.
// Returns the packed matrix, which points at dst.
MatrixRef PackPanels(const void* row_major, DType dtype, int rows, int cols, void* dst);

}  // namespace retain::kernels
