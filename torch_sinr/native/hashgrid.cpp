// The hash-grid inference kernel: every level's cell, corner rows, weights and weighted sum for a
// block of points in one pass, on plain threads. Called through ctypes (torch_sinr/native/build.py
// compiles it; torch_sinr/inr/hashgrid/fast.py calls it), so it includes no torch header: it
// compiles in about a second where a torch extension takes half a minute. Threads: OpenMP, on
// torch's own pool (see the end of the file).
//
// It computes what fast.index_and_weights + interpolate_levels compute, operation by operation in
// float32 (tests/inr/hashgrid/test_native.py checks bit equality). The corner sums are fused
// multiply-adds because torch's addcmul_ is one on the CPUs it vectorizes for (AVX2, AVX-512:
// measured, every element equal to the fused result); every other product and sum is a separate
// operation, as in torch (built with -ffp-contract=off so the compiler fuses nothing else):
//   pos = u * scale[l]; cell = floor(pos), then min(cell, top[l]) where a top is given;
//   high = pos - cell; low = 1 - high;
//   2-D weight of corner c = bx + 2 by: wy[by] * wx[bx]; 3-D: (wz[bz] * wy[by]) * wx[bx];
//   out = row[c0] * w0, then out = out + row[c] * w for c = 1, 2, ...
// Rows: a dense level's vertex row is sum_a v_a * stride_a + offset; a hashed level's is
// (XOR_a v_a * prime_a (int64)) & mask + offset. Every row is checked against the table's row
// count before it is read: a row out of range stops the call with an error code, never a read
// outside the table.
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

constexpr int64_t kBlock = 128;  // points per block: its rows and weights (128 x 8 x 12 bytes) stay in L1

struct Args {
  const float* table; int64_t rows; int64_t features;
  const float* coords; int64_t n; int64_t dims;
  int64_t levels; const float* scale; const float* top;  // top: nullptr = no clamp of the cell
  int64_t num_dense; const int64_t* strides;               // (num_dense, dims)
  const int64_t* offsets;                                  // (levels)
  const int64_t* primes; int64_t mask;                     // (dims)
  float* out; int64_t out_level_stride; int64_t out_point_stride;  // out[l * ls + i * ps + f]
};

template <int D>
int run_range(const Args& a, int64_t begin, int64_t end) {
  constexpr int C = 1 << D;
  const int64_t F = a.features;
  // Two passes per level and block: first every point's rows and weights (each row's cache line
  // prefetched as soon as it is known), then the weighted sums. Random points miss the cache on
  // the fine levels; asking for a block's lines before reading any keeps many misses in flight
  // instead of one (measured ~1.5-2x on 2**20 random points of a 2**20-row level).
  int64_t rows[kBlock][C];
  float weights[kBlock][C];
  for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
    const int64_t count = std::min(end, b0 + kBlock) - b0;
    for (int64_t l = 0; l < a.levels; ++l) {
      const float scale = a.scale[l];
      const bool dense = l < a.num_dense;
      const int64_t offset = a.offsets[l];
      for (int64_t j = 0; j < count; ++j) {
        const float* u = a.coords + (b0 + j) * D;
        float w[D][2];
        int64_t cell[D];
        for (int d = 0; d < D; ++d) {
          const float pos = u[d] * scale;
          float c = std::floor(pos);
          if (a.top != nullptr) c = std::min(c, a.top[l]);
          const float high = pos - c;
          w[d][1] = high;
          w[d][0] = 1.0f - high;
          cell[d] = static_cast<int64_t>(static_cast<int32_t>(c));
        }
        for (int c = 0; c < C; ++c) {
          int64_t r;
          if (dense) {
            r = offset;
            for (int d = 0; d < D; ++d) r += (cell[d] + ((c >> d) & 1)) * a.strides[l * D + d];
          } else {
            int64_t h = 0;
            for (int d = 0; d < D; ++d) h ^= (cell[d] + ((c >> d) & 1)) * a.primes[d];
            r = (h & a.mask) + offset;
          }
          if (r < 0 || r >= a.rows) return 1;
          rows[j][c] = r * F;
          __builtin_prefetch(a.table + r * F);
          const int bx = c & 1, by = (c >> 1) & 1;
          if (D == 2) {
            weights[j][c] = w[1][by] * w[0][bx];
          } else {
            const int bz = (c >> 2) & 1;
            weights[j][c] = (w[D - 1][bz] * w[1][by]) * w[0][bx];
          }
        }
      }
      float* out = a.out + l * a.out_level_stride + b0 * a.out_point_stride;
      for (int64_t j = 0; j < count; ++j) {
        float* o = out + j * a.out_point_stride;
        for (int64_t f = 0; f < F; ++f) {
          float acc = a.table[rows[j][0] + f] * weights[j][0];
          for (int c = 1; c < C; ++c) acc = std::fma(a.table[rows[j][c] + f], weights[j][c], acc);
          o[f] = acc;
        }
      }
    }
  }
  return 0;
}

}  // namespace

extern "C" int sinr_hashgrid_interpolate(
    const float* table, int64_t rows, int64_t features, const float* coords, int64_t n, int64_t dims,
    int64_t levels, const float* scale, const float* top, int64_t num_dense, const int64_t* strides,
    const int64_t* offsets, const int64_t* primes, int64_t mask, float* out, int64_t out_level_stride,
    int64_t out_point_stride, int64_t threads) {
  if (dims != 2 && dims != 3) return 2;
  const Args a{table, rows, features, coords, n, dims, levels, scale, top, num_dense, strides, offsets,
               primes, mask, out, out_level_stride, out_point_stride};
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  int status = 0;
  // OpenMP, not threads of our own: the library is linked to the libgomp torch has loaded (same
  // soname), so this runs on torch's intra-op pool. Threads of our own competed for the 2 cores
  // with torch's workers, still spinning after the previous matmul: the grid and the MLP each ran
  // ~1.5x slower interleaved than alone.
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(threads)) reduction(| : status)
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t begin = block * kBlock, end = std::min(n, begin + kBlock);
    status |= a.dims == 2 ? run_range<2>(a, begin, end) : run_range<3>(a, begin, end);
  }
  return status;
}
