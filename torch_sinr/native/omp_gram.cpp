// OMP in correlation space: every signal's correlations alpha = A^T r updated from the Gram
// matrix G = A^T A, so no step multiplies by the dictionary (torch_sinr.core.coders.omp_gram).
//
// U is stored by chunks of CHUNK atoms, each chunk's columns one after another, so building a
// chunk of U_t reads one contiguous run (t x CHUNK values) rather than t separate streams.
//
// Per signal, with q_1..q_t the orthonormal basis Gram-Schmidt makes of the support's atoms and
// U_i = A^T q_i (a column of k2 values, kept for the signal):
//   j      = argmax over atoms not taken of |alpha|, the lowest index on ties;
//   c_i    = q_i^T a_j = U_i[j]                    (i < t: the new atom's coordinates on the basis)
//   rho^2  = G[j, j] - |c|^2                        (the part of a_j outside the basis)
//   U_t    = (G[j, :] - sum_i c_i U_i) / rho         (A^T q_t, t columns of reads)
//   gamma  = q_t^T r = alpha[j] / rho                (r is orthogonal to q_1..q_{t-1})
//   alpha -= gamma U_t;  |r|^2 -= gamma^2
// and at the end x = R^-1 gamma, with R the upper-triangular factor of A_I = Q R (R[i, t] = c_i,
// R[t, t] = rho). Work a step is k2 * t multiply-adds against k2 * k1 for a residual's
// correlations, and U's columns are read from cache, not the dictionary from memory.
//
// The stopping rules are scikit-learn's as torch_sinr's batch OMP applies them: a row stops when
// an atom already taken scores at least as high as the best new one, when the new atom is
// (numerically) dependent on the support, or when |r|^2 <= tol2. Each signal is one thread's
// work from start to end, so results do not depend on the number of threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// Atoms per block of U's storage; a block of U_t is summed in an L1-resident accumulator. 512 was
// as fast as 256 and 1024 on benchmarks.core's two shapes (AMD EPYC, AVX2); panels of 8-32 atoms
// with register-held sums were 1.1-1.6x slower there.
constexpr int64_t CHUNK = 512;

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

void one_signal(const Problem& p, int64_t b, std::vector<double>& u, std::vector<double>& alpha,
                std::vector<unsigned char>& taken, std::vector<double>& r_upper, std::vector<double>& gamma) {
    const int64_t k2 = p.k2, limit = p.limit;
    const double* a0 = p.alpha0 + b * k2;
    for (int64_t k = 0; k < k2; ++k) alpha[k] = a0[k];
    std::fill(taken.begin(), taken.end(), 0);
    int64_t* support = p.support + b * limit;
    double* res2 = p.residual2 + b * limit;
    double r2 = p.norm2[b];
    const double eps = 2.220446049250313e-16;
    int64_t t = 0;
    bool active = r2 > p.tol2[b];
    for (; active && t < limit; ++t) {
        // selection: the first maximum of |alpha| over atoms not taken; and the best taken atom
        int64_t j = -1;
        double best = -1.0, best_taken = -2.0;
        for (int64_t k = 0; k < k2; ++k) {
            const double v = std::fabs(alpha[k]);
            if (taken[k]) {
                if (v > best_taken) best_taken = v;
            } else if (v > best) {
                best = v;
                j = k;
            }
        }
        if (j < 0 || best_taken >= best) break;
        // the new atom's coordinates on the basis, and its part outside it
        double c2 = 0.0;
        const double* uj = u.data() + (j / CHUNK) * limit * CHUNK + j % CHUNK;
        for (int64_t i = 0; i < t; ++i) {
            const double c = uj[i * CHUNK];
            r_upper[i * limit + t] = c;
            c2 += c * c;
        }
        const double gjj = p.gram[j * k2 + j];
        const double rho2 = gjj - c2;
        if (rho2 <= 1e4 * eps * gjj) break;  // dependent on the support: cannot improve the fit
        const double rho = std::sqrt(rho2);
        r_upper[t * limit + t] = rho;
        const double g = alpha[j] / rho;
        gamma[t] = g;
        // U_t = (G[j, :] - sum_i c_i U_i) / rho, chunk by chunk; alpha -= g U_t in the same pass
        const double* gj = p.gram + j * k2;
        double acc[CHUNK];
        for (int64_t start = 0; start < k2; start += CHUNK) {
            const int64_t n = std::min(CHUNK, k2 - start);
            double* block = u.data() + (start / CHUNK) * limit * CHUNK;  // this chunk's columns, in order
            for (int64_t k = 0; k < n; ++k) acc[k] = gj[start + k];
            // four basis columns per pass over acc: the same fused multiply-adds in the same
            // order as one column at a time (so the same bits), with a quarter of acc's loads
            // and stores
            int64_t i = 0;
            for (; i + 4 <= t; i += 4) {
                const double c0 = -r_upper[i * limit + t], c1 = -r_upper[(i + 1) * limit + t];
                const double c2 = -r_upper[(i + 2) * limit + t], c3 = -r_upper[(i + 3) * limit + t];
                const double* u0 = block + i * CHUNK;
                const double* u1 = u0 + CHUNK;
                const double* u2 = u1 + CHUNK;
                const double* u3 = u2 + CHUNK;
                for (int64_t k = 0; k < n; ++k)
                    acc[k] = std::fma(c3, u3[k], std::fma(c2, u2[k], std::fma(c1, u1[k], std::fma(c0, u0[k], acc[k]))));
            }
            for (; i < t; ++i) {
                const double c = -r_upper[i * limit + t];
                const double* ui = block + i * CHUNK;
                for (int64_t k = 0; k < n; ++k) acc[k] = std::fma(c, ui[k], acc[k]);
            }
            double* out = block + t * CHUNK;
            double* al = alpha.data() + start;
            const double inv = 1.0 / rho;
            for (int64_t k = 0; k < n; ++k) {
                const double v = acc[k] * inv;
                out[k] = v;
                al[k] = std::fma(-g, v, al[k]);
            }
        }
        taken[j] = 1;
        support[t] = j;
        r2 -= g * g;
        if (r2 < 0.0) r2 = 0.0;
        res2[t] = r2;
        active = r2 > p.tol2[b];
    }
    p.counts[b] = t;
    for (int64_t i = t; i < limit; ++i) res2[i] = r2;
    // x = R^-1 gamma (back substitution); padding stays 0
    double* x = p.coef + b * limit;
    for (int64_t i = t - 1; i >= 0; --i) {
        double v = gamma[i];
        for (int64_t m = i + 1; m < t; ++m) v -= r_upper[i * limit + m] * x[m];
        x[i] = v / r_upper[i * limit + i];
    }
}

}  // namespace

extern "C" int sinr_omp_gram(int64_t batch, int64_t k2, int64_t limit, const double* gram, const double* alpha0,
                             const double* norm2, const double* tol2, int64_t* support, double* coef,
                             int64_t* counts, double* residual2) {
    if (batch < 0 || k2 < 1 || limit < 1 || limit > k2) return 1;
    const Problem p{k2, limit, gram, alpha0, norm2, tol2, support, coef, counts, residual2};
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        // every thread reaches the loop below (the worksharing construct needs them all); one whose
        // scratch could not be allocated marks its signals failed and the caller raises
        bool ok = true;
        std::vector<double> u, alpha, r_upper, gamma;
        std::vector<unsigned char> taken;
        try {
            u.resize(static_cast<size_t>((k2 + CHUNK - 1) / CHUNK) * CHUNK * static_cast<size_t>(limit));
            alpha.resize(k2);
            r_upper.resize(static_cast<size_t>(limit) * limit);
            gamma.resize(limit);
            taken.resize(k2);
        } catch (...) {
            ok = false;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < batch; ++b) {
            if (ok) {
                one_signal(p, b, u, alpha, taken, r_upper, gamma);
            } else {
                failed = 1;
            }
        }
    }
    return failed ? 2 : 0;
}
