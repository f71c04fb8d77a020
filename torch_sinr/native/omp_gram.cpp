// OMP in correlation space: every signal's correlations alpha = A^T r come from the Gram matrix
// G = A^T A, so no step multiplies by the dictionary (torch_sinr.core.coders.omp_gram).
//
// Per signal, with I = (j_0 .. j_{t-1}) the support so far and beta its least-squares
// coefficients (r = w - A_I beta):
//   alpha[k] = alpha0[k] - sum_i beta_i G[j_i, k]           (alpha0 = A^T w)
//   j        = argmax over atoms not taken of |alpha|, the lowest index on ties;
//   c        = R^-T G[I, j]                                   (coordinates of a_j on the orthonormal
//              basis of A_I = Q R; t^2/2 multiply-adds, for the chosen atom only)
//   rho^2    = G[j, j] - |c|^2;  R[:, t] = (c, rho);  gamma_t = alpha[j] / rho;  |r|^2 -= gamma_t^2
//   beta     = R^-1 gamma.
// A step is k2 x t multiply-adds (the correlations) against k2 x k1 for a residual's.
//
// Exact decisions from a float32 bulk. The decision a step takes is defined on float64 values:
// alpha[k] = fl(alpha0[k] - sum_i beta_i G[j_i, k]), fused multiply-adds in support order
// (direct()). Every atom's alpha is computed each step in float32 from a float32 copy of G
// (half the bytes and twice the lanes of float64: about 2.3x faster on benchmarks.core's 8x256
// problem). beta is recomputed each step, so neither sum carries earlier steps' rounding: each is
// within (t + 3) u P of the exact sum, P = max|alpha0| + sum_i |beta_i| max|G| bounding every
// term and partial sum, u the unit roundoff (2^-24, 2^-53). An atom whose float32 |alpha| is more
// than twice the sum of both bounds below the largest cannot hold the float64 maximum; the others
// (about one per step on that problem) are scored in float64, so the argmax is the float64
// rule's exactly, whatever float32 rounding did (tests/core/coders/test_omp.py builds a tie
// below float32's resolution). The stopping rule's taken atoms are rescored in float64 only when
// their float32 scores cannot settle it.
//
// The stopping rules are scikit-learn's as torch_sinr's batch OMP applies them: a row stops when
// an atom already taken scores at least as high as the best new one, when the new atom is
// (numerically) dependent on the support, or when |r|^2 <= tol2. Each signal is one thread's
// work from start to end, and every sum has a fixed order, so results do not depend on the
// number of threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// Atoms per block of the float32 correlations, summed in an L1-resident accumulator while the
// support's rows of G stream past (512 was chosen for the float64 kernel this one replaced).
constexpr int64_t CHUNK = 512;
constexpr int64_t SPAN = 64;  // atoms per block of the candidates' scan
static_assert(CHUNK % SPAN == 0, "a chunk holds whole blocks");

struct Problem {
    int64_t k2, limit;
    const double* gram;    // (k2, k2), row-major (symmetric)
    const double* alpha0;  // (B, k2): A^T w
    const double* norm2;   // (B,): |w|^2
    const double* tol2;    // (B,): stop once |r|^2 <= tol2 (negative: never)
    int64_t* support;      // (B, limit) out, padding 0
    double* coef;          // (B, limit) out, padding 0
    int64_t* counts;       // (B,) out
    double* residual2;     // (B, limit) out: |r|^2 after each step (the last value repeated)
};

constexpr double U32 = 5.9604644775390625e-08;  // 2^-24
constexpr double U64 = 1.1102230246251565e-16;  // 2^-53
constexpr float F32_TINY = 1e-37f;               // below this a float32 result may be subnormal

struct Scratch {
    std::vector<float> approx;      // (k2,) |float32 correlations| of this step
    std::vector<float> a0f;         // (k2,) alpha0 rounded to float32 once per signal, not once a step
    std::vector<uint32_t> block_max;  // (k2 / SPAN,) the largest score's bits per block
    std::vector<double> beta;       // (limit,) least-squares coefficients on the support
    std::vector<double> work;       // (limit,) back substitution's right-hand side
    std::vector<double> row;        // (limit,) the chosen atom's coordinates U_i[j] on the basis
    std::vector<double> inv;        // (limit,) 1 / rho_i
    std::vector<double> rcol;       // (limit, limit): column i of R contiguous, rcol[i * limit + m] = R[m, i]
    std::vector<double> rrow;       // (limit, limit): R by rows, rrow[i * limit + m] = R[i, m]
    std::vector<double> gamma;
    std::vector<unsigned char> taken;
};

// acc[k] += b0 g0[k] + b1 g1[k] + b2 g2[k] + b3 g3[k], the four fused multiply-adds in that order
__attribute__((noinline)) void axpy4(float* __restrict acc, const float* __restrict g0, const float* __restrict g1,
                                     const float* __restrict g2, const float* __restrict g3, const float* b, int64_t n) {
    const float b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
    for (int64_t k = 0; k < n; ++k)
        acc[k] = std::fma(b3, g3[k], std::fma(b2, g2[k], std::fma(b1, g1[k], std::fma(b0, g0[k], acc[k]))));
}

__attribute__((noinline)) void axpy1(float* __restrict acc, const float* __restrict g0, float b0, int64_t n) {
    for (int64_t k = 0; k < n; ++k) acc[k] = std::fma(b0, g0[k], acc[k]);
}

double direct(const Problem& p, const int64_t* support, const double* beta, int64_t t, const double* a0, int64_t k) {
    double acc = a0[k];
    for (int64_t i = 0; i < t; ++i) acc = std::fma(-beta[i], p.gram[support[i] * p.k2 + k], acc);
    return acc;
}

void one_signal(const Problem& p, const float* gram32, double gmax, int64_t b, Scratch& s) {
    const int64_t k2 = p.k2, limit = p.limit;
    const double* a0 = p.alpha0 + b * k2;
    double a0max = 0.0;
    for (int64_t k = 0; k < k2; ++k) a0max = std::max(a0max, std::fabs(a0[k]));
    for (int64_t k = 0; k < k2; ++k) s.a0f[k] = static_cast<float>(a0[k]);
    std::fill(s.taken.begin(), s.taken.end(), 0);
    int64_t* support = p.support + b * limit;
    double* res2 = p.residual2 + b * limit;
    double r2 = p.norm2[b];
    const double eps = 2.220446049250313e-16;
    int64_t t = 0;
    bool active = r2 > p.tol2[b];
    float acc[CHUNK];
    float bf[4];
    for (; active && t < limit; ++t) {
        // float32 correlations of every atom: alpha0 - sum_i beta_i G32[j_i, :]
        // Chunks in alternating order, forwards on even steps and backwards on odd ones: late in a
        // signal its support's rows (t x 4 k2 bytes, 1.9 MB at t = 116, k2 = 4096) outgrow L2, and
        // a pass in the same order each step would evict every chunk before its next use; reversed,
        // a step starts on the chunks the last one touched last, still in L2. The order changes no
        // value: every atom's sum is its own.
        const int64_t chunks = (k2 + CHUNK - 1) / CHUNK;
        for (int64_t c = 0; c < chunks; ++c) {
            const int64_t start = (t & 1 ? chunks - 1 - c : c) * CHUNK;
            const int64_t n = std::min(CHUNK, k2 - start);
            std::memcpy(acc, s.a0f.data() + start, n * sizeof(float));
            int64_t i = 0;
            for (; i + 4 <= t; i += 4) {
                for (int q = 0; q < 4; ++q) bf[q] = static_cast<float>(-s.beta[i + q]);
                axpy4(acc, gram32 + support[i] * k2 + start, gram32 + support[i + 1] * k2 + start,
                      gram32 + support[i + 2] * k2 + start, gram32 + support[i + 3] * k2 + start, bf, n);
            }
            for (; i < t; ++i) axpy1(acc, gram32 + support[i] * k2 + start, static_cast<float>(-s.beta[i]), n);
            float* out = s.approx.data() + start;
            for (int64_t k = 0; k < n; ++k) out[k] = std::fabs(acc[k]);
            // the largest score per block of SPAN atoms as the largest bit pattern, while the chunk
            // is in L1: non-negative floats order as their bits, and an integer maximum vectorizes
            // where a float one (signed zeros, NaN) does not (the candidates' scan below skips
            // blocks below its floor; CHUNK is a multiple of SPAN)
            const uint32_t* bits = reinterpret_cast<const uint32_t*>(out);
            for (int64_t b0 = 0; b0 < n; b0 += SPAN) {
                const int64_t stop = std::min(n, b0 + SPAN);
                uint32_t m = 0;
                for (int64_t k = b0; k < stop; ++k) m = std::max(m, bits[k]);
                s.block_max[(start + b0) / SPAN] = m;
            }
        }
        float taken_top = 0.0f;  // the taken atoms' largest float32 score (about 0: r is orthogonal to them)
        for (int64_t i = 0; i < t; ++i) {
            taken_top = std::max(taken_top, s.approx[support[i]]);
            s.approx[support[i]] = 0.0f;  // taken atoms: skipped below, and no higher than any other
        }
        // the blocks holding taken atoms, again without them
        const uint32_t* bits = reinterpret_cast<const uint32_t*>(s.approx.data());
        for (int64_t i = 0; i < t; ++i) {
            const int64_t block = support[i] / SPAN, start = block * SPAN, stop = std::min(k2, start + SPAN);
            uint32_t m = 0;
            for (int64_t k = start; k < stop; ++k) m = std::max(m, bits[k]);
            s.block_max[block] = m;
        }
        uint32_t top_bits = 0;
        for (int64_t block = 0; block < (k2 + SPAN - 1) / SPAN; ++block) top_bits = std::max(top_bits, s.block_max[block]);
        float top;
        std::memcpy(&top, &top_bits, sizeof top);
        // the bound on |float32 - float64 value| (both against the exact sum)
        double beta_l1 = 0.0;
        for (int64_t i = 0; i < t; ++i) beta_l1 += std::fabs(s.beta[i]);
        const double terms = a0max + beta_l1 * gmax;
        const double bound = (static_cast<double>(t) + 3.0) * (U32 + U64) * terms * 1.001 +
                             (static_cast<double>(t) + 3.0) * F32_TINY;
        int64_t j = -1;
        double best = -1.0, alpha_j = 0.0;
        if (t < k2) {
            const double floor = static_cast<double>(top) - 2.0 * bound;
            for (int64_t k = 0; k < k2; ++k) {
                if (k % SPAN == 0) {
                    float block_top;
                    std::memcpy(&block_top, &s.block_max[k / SPAN], sizeof block_top);
                    if (static_cast<double>(block_top) < floor) {
                        k += SPAN - 1;
                        continue;
                    }
                }
                if (static_cast<double>(s.approx[k]) < floor || s.taken[k]) continue;
                const double al = direct(p, support, s.beta.data(), t, a0, k);
                if (std::fabs(al) > best) {
                    best = std::fabs(al);
                    j = k;
                    alpha_j = al;
                }
            }
        }
        if (j < 0) break;
        // the stopping rule on the taken atoms' float64 scores, computed only where the float32
        // ones cannot settle it (they are within the bound of the float64 ones)
        if (t > 0 && !(best > static_cast<double>(taken_top) + bound)) {
            double best_taken = -2.0;
            for (int64_t m = 0; m < t; ++m)
                best_taken = std::max(best_taken, std::fabs(direct(p, support, s.beta.data(), t, a0, support[m])));
            if (best_taken >= best) break;
        }
        // c solves R^T c = G[I, j] (forward substitution by rows of R, so the updates are
        // contiguous and vectorize instead of one dependent multiply-add chain per entry)
        double* column = s.rcol.data() + t * limit;  // R[:, t]
        for (int64_t i = 0; i < t; ++i) s.row[i] = p.gram[support[i] * k2 + j];
        for (int64_t i = 0; i < t; ++i) {
            const double c = s.row[i] * s.inv[i];
            s.row[i] = c;
            const double* ri = s.rrow.data() + i * limit;  // R[i, :]
            for (int64_t m = i + 1; m < t; ++m) s.row[m] = std::fma(-c, ri[m], s.row[m]);
        }
        double c2 = 0.0;
        for (int64_t i = 0; i < t; ++i) {
            const double c = s.row[i];
            column[i] = c;
            s.rrow[i * limit + t] = c;
            c2 += c * c;
        }
        const double gjj = p.gram[j * k2 + j];
        const double rho2 = gjj - c2;
        if (rho2 <= 1e4 * eps * gjj) break;
        const double rho = std::sqrt(rho2);
        column[t] = rho;
        s.rrow[t * limit + t] = rho;
        s.inv[t] = 1.0 / rho;
        const double g = alpha_j / rho;
        s.gamma[t] = g;
        s.taken[j] = 1;
        support[t] = j;
        r2 -= g * g;
        if (r2 < 0.0) r2 = 0.0;
        res2[t] = r2;
        active = r2 > p.tol2[b];
        // beta = R^-1 gamma on the support of t + 1 atoms, by columns (contiguous, vectorized)
        std::copy(s.gamma.begin(), s.gamma.begin() + t + 1, s.work.begin());
        for (int64_t i = t; i >= 0; --i) {
            const double* ri = s.rcol.data() + i * limit;
            const double x = s.work[i] / ri[i];
            s.beta[i] = x;
            for (int64_t m = 0; m < i; ++m) s.work[m] = std::fma(-x, ri[m], s.work[m]);
        }
    }
    p.counts[b] = t;
    for (int64_t i = t; i < limit; ++i) res2[i] = r2;
    double* x = p.coef + b * limit;
    for (int64_t i = 0; i < t; ++i) x[i] = s.beta[i];
}

}  // namespace

extern "C" int sinr_omp_gram(int64_t batch, int64_t k2, int64_t limit, const double* gram, const float* gram32,
                             const double* alpha0, const double* norm2, const double* tol2, int64_t* support,
                             double* coef, int64_t* counts, double* residual2) {
    if (batch < 0 || k2 < 1 || limit < 1 || limit > k2) return 1;
    const Problem p{k2, limit, gram, alpha0, norm2, tol2, support, coef, counts, residual2};
    double gmax = 0.0;  // |G_jk| <= sqrt(G_jj G_kk) <= max_k G_kk (float64 rounding: the margin)
    for (int64_t k = 0; k < k2; ++k) gmax = std::max(gmax, gram[k * k2 + k]);
    gmax *= 1.0 + 1e-9;
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        bool ok = true;
        Scratch s;
        try {
            s.approx.resize(k2);
            s.a0f.resize(k2);
            s.block_max.resize((k2 + SPAN - 1) / SPAN);
            s.beta.resize(limit);
            s.row.resize(limit);
            s.inv.resize(limit);
            s.work.resize(limit);
            s.rcol.resize(static_cast<size_t>(limit) * limit);
            s.rrow.resize(static_cast<size_t>(limit) * limit);
            s.gamma.resize(limit);
            s.taken.resize(k2);
        } catch (...) {
            ok = false;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < batch; ++b) {
            if (ok) {
                one_signal(p, gram32, gmax, b, s);
            } else {
                failed = 1;
            }
        }
    }
    return failed ? 2 : 0;
}
