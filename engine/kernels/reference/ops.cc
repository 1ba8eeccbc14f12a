// Reference kernels. Written for clarity and to mirror the spec's equations line by line.
#include "engine/kernels/reference/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace retain::kernels::reference {

void Embedding(const MatrixRef& emb, const engine::TokenId* tokens, int rows, float* out) {
  for (int t = 0; t < rows; ++t) {
    for (int c = 0; c < emb.cols; ++c)
      out[t * emb.cols + c] = LoadAsFloat(emb.data, emb.dtype, ElementIndex(emb, tokens[t], c));
  }
}

void LayerNorm(const float* x, int rows, int width, const float* w, const float* b, float eps,
               float* y) {
  for (int t = 0; t < rows; ++t) {
    const float* xr = x + static_cast<size_t>(t) * width;
    float* yr = y + static_cast<size_t>(t) * width;
    float mean = 0;
    for (int c = 0; c < width; ++c) mean += xr[c];
    mean /= width;
    float var = 0;
    for (int c = 0; c < width; ++c) var += (xr[c] - mean) * (xr[c] - mean);
    var /= width;
    const float inv = 1.0f / std::sqrt(var + eps);
    for (int c = 0; c < width; ++c) yr[c] = (xr[c] - mean) * inv * w[c] + b[c];
  }
}

void MatMul(const MatMulArgs& a) {
  const int n = a.w.rows, k = a.w.cols;
  std::vector<float> row(k);
  for (int j = 0; j < n; ++j) {
    for (int c = 0; c < k; ++c) row[c] = LoadAsFloat(a.w.data, a.w.dtype, ElementIndex(a.w, j, c));
    for (int i = 0; i < a.m; ++i) {
      const float* x = a.x + static_cast<size_t>(i) * k;
      float acc = 0;
      for (int c = 0; c < k; ++c) acc += x[c] * row[c];
      a.y[static_cast<size_t>(i) * n + j] = acc;
    }
  }
}

void TokenShift(const TokenShiftArgs& a) {
  const size_t w = a.width;
  for (int s = 0; s < a.seqs.num_seqs; ++s) {
    const int begin = a.seqs.row_begin[s], end = a.seqs.row_begin[s + 1];
    if (end <= begin) continue;
    std::memcpy(a.prev + begin * w, a.states[s], w * sizeof(float));
    if (end - begin > 1) {
      std::memcpy(a.prev + (begin + 1) * w, a.x + begin * w, (end - begin - 1) * w * sizeof(float));
    }
    std::memcpy(a.states[s], a.x + (end - 1) * w, w * sizeof(float));
  }
}

void MixDelta(const float* x, const float* prev, const float* c, int rows, int width, float* out) {
  for (int t = 0; t < rows; ++t) {
    for (int i = 0; i < width; ++i) {
      const size_t p = static_cast<size_t>(t) * width + i;
      out[p] = x[p] + (prev[p] - x[p]) * c[i];
    }
  }
}

void MixInterp(const float* x, const float* prev, const float* m, int rows, int width,
               float* out) {
  for (int t = 0; t < rows; ++t) {
    for (int i = 0; i < width; ++i) {
      const size_t p = static_cast<size_t>(t) * width + i;
      out[p] = x[p] * m[i] + prev[p] * (1.0f - m[i]);
    }
  }
}

void Tanh(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = std::tanh(x[i]);
}

static inline float Sig(float z) { return 1.0f / (1.0f + std::exp(-z)); }

void Sigmoid(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = Sig(x[i]);
}

void ReluSquare(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float r = x[i] > 0 ? x[i] : 0.0f;
    x[i] = r * r;
  }
}

void Add(float* x, const float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] += y[i];
}

void Mul(float* x, const float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] *= y[i];
}

void Rwkv7Prepare(const Rwkv7PrepareArgs& a) {
  const int n = a.head_size, c_total = a.n_head * a.head_size;
  for (int t = 0; t < a.rows; ++t) {
    const size_t row = static_cast<size_t>(t) * c_total;
    float* k = a.k + row;
    float* v = a.v + row;
    float* w = a.wz + row;
    float* ia = a.az + row;  // becomes `a` = -kk after ia is consumed
    float* b = a.b + row;
    for (int h = 0; h < a.n_head; ++h) {
      float norm = 0;
      for (int j = h * n; j < (h + 1) * n; ++j) norm += (k[j] * a.k_k[j]) * (k[j] * a.k_k[j]);
      const float inv = 1.0f / std::max(std::sqrt(norm), 1e-12f);
      for (int j = h * n; j < (h + 1) * n; ++j) {
        const float kk = k[j] * a.k_k[j] * inv;
        const float iclr = Sig(a.a0[j] + ia[j]);
        w[j] = std::exp(-0.606531f * Sig(a.w0[j] + w[j]));
        k[j] = k[j] * (1.0f + (iclr - 1.0f) * a.k_a[j]);
        ia[j] = -kk;
        b[j] = kk * iclr;
      }
    }
    if (a.first_layer) {
      std::memcpy(a.v_first + row, v, c_total * sizeof(float));
    } else {
      const float* vf = a.v_first + row;
      const float* vz = a.vz + row;
      for (int j = 0; j < c_total; ++j) v[j] = v[j] + (vf[j] - v[j]) * Sig(a.v0[j] + vz[j]);
    }
  }
}

void Wkv7Head(const Wkv7Args& a, int seq, int h) {
  const int n = a.head_size, c_total = a.n_head * a.head_size;
  float* s = a.states[seq] + static_cast<size_t>(h) * n * n;
  for (int t = a.seqs.row_begin[seq]; t < a.seqs.row_begin[seq + 1]; ++t) {
    const size_t off = static_cast<size_t>(t) * c_total + h * n;
    const float *r = a.r + off, *w = a.w + off, *k = a.k + off, *v = a.v + off;
    const float *aa = a.a + off, *b = a.b + off;
    for (int i = 0; i < n; ++i) {
      float* si = s + static_cast<size_t>(i) * n;
      float sa = 0;
      for (int j = 0; j < n; ++j) sa += si[j] * aa[j];
      float y = 0;
      for (int j = 0; j < n; ++j) {
        si[j] = si[j] * w[j] + sa * b[j] + v[i] * k[j];
        y += si[j] * r[j];
      }
      a.y[off + i] = y;
    }
  }
}

void Wkv7(const Wkv7Args& a) {
  for (int s = 0; s < a.seqs.num_seqs; ++s)
    for (int h = 0; h < a.n_head; ++h) Wkv7Head(a, s, h);
}

void Rwkv7Output(const Rwkv7OutputArgs& a) {
  const int n = a.head_size, c_total = a.n_head * a.head_size;
  for (int t = 0; t < a.rows; ++t) {
    const size_t row = static_cast<size_t>(t) * c_total;
    float* y = a.y + row;
    const float *r = a.r + row, *k = a.k + row, *v = a.v + row, *g = a.g + row;
    for (int h = 0; h < a.n_head; ++h) {
      const int lo = h * n, hi = lo + n;
      float mean = 0;
      for (int j = lo; j < hi; ++j) mean += y[j];
      mean /= n;
      float var = 0;
      for (int j = lo; j < hi; ++j) var += (y[j] - mean) * (y[j] - mean);
      var /= n;
      const float inv = 1.0f / std::sqrt(var + a.eps);
      float bonus = 0;
      for (int j = lo; j < hi; ++j) bonus += r[j] * k[j] * a.r_k[j];
      for (int j = lo; j < hi; ++j) {
        const float normed = (y[j] - mean) * inv * a.ln_w[j] + a.ln_b[j];
        y[j] = (normed + bonus * v[j]) * g[j];
      }
    }
  }
}

void Wkv4(const Wkv4Args& a) {
  const int c_total = a.width;
  for (int s = 0; s < a.seqs.num_seqs; ++s) {
    float *aa = a.aa[s], *bb = a.bb[s], *pp = a.pp[s];
    for (int t = a.seqs.row_begin[s]; t < a.seqs.row_begin[s + 1]; ++t) {
      const size_t row = static_cast<size_t>(t) * c_total;
      for (int c = 0; c < c_total; ++c) {
        const float kt = a.k[row + c], vt = a.v[row + c];
        float ww = a.time_first[c] + kt;
        float p = std::max(pp[c], ww);
        float e1 = std::exp(pp[c] - p), e2 = std::exp(ww - p);
        a.wkv[row + c] = (e1 * aa[c] + e2 * vt) / (e1 * bb[c] + e2);
        ww = a.time_decay[c] + pp[c];
        p = std::max(ww, kt);
        e1 = std::exp(ww - p);
        e2 = std::exp(kt - p);
        aa[c] = e1 * aa[c] + e2 * vt;
        bb[c] = e1 * bb[c] + e2;
        pp[c] = p;
      }
    }
  }
}

}  // namespace retain::kernels::reference
