// Fused CPU kernels of the multiresolution hash encoding (render.nerf.encoding).
//
// The same arithmetic as the pure-PyTorch reference `hash_grid_indices` + gather, one pass per
// sample and level without the [N, L, 8] index and weight tensors: positions clamped to the unit
// cube, scaled by the level's cells per axis, the cell's 8 corners indexed densely
// (i + j (r+1) + k (r+1)^2) where (r+1)^3 <= T, else by the spatial hash
// (i * 1 xor j * 2654435761 xor k * 805459861) mod T in uint32 arithmetic (tcnn); trilinear
// weights; level l owns rows [(first_level + l) T, (first_level + l + 1) T) of the table.
//
// Backward: the table gradient is accumulated in parallel over levels (levels own disjoint rows,
// so no atomics), the position gradient in parallel over samples; coordinates on or outside the
// cube's faces get no gradient, as in the reference.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>

namespace {

template <typename scalar_t>
struct Cell {
  int64_t rows[8];
  scalar_t w[8];
  scalar_t frac[3];
};

template <typename scalar_t>
inline void cell_of(const scalar_t* xp, int64_t r, int64_t T, int64_t level_row0, Cell<scalar_t>& c) {
  int64_t b[3];
  for (int d = 0; d < 3; ++d) {
    scalar_t v = xp[d];
    v = v < 0 ? scalar_t(0) : (v > 1 ? scalar_t(1) : v);
    const scalar_t p = v * scalar_t(r);
    int64_t fl = static_cast<int64_t>(std::floor(p));
    if (fl > r - 1) fl = r - 1;
    b[d] = fl;
    c.frac[d] = p - scalar_t(fl);
  }
  const int64_t side = r + 1;
  const bool dense = side * side * side <= T;
  for (int k = 0; k < 8; ++k) {
    const int64_t i = b[0] + (k & 1), j = b[1] + ((k >> 1) & 1), l = b[2] + ((k >> 2) & 1);
    int64_t row;
    if (dense) {
      row = i + j * side + l * side * side;
    } else {
      const uint64_t h = (static_cast<uint64_t>(i) & 0xFFFFFFFFull) ^
                         ((static_cast<uint64_t>(j) * 2654435761ull) & 0xFFFFFFFFull) ^
                         ((static_cast<uint64_t>(l) * 805459861ull) & 0xFFFFFFFFull);
      row = static_cast<int64_t>(h % static_cast<uint64_t>(T));
    }
    c.rows[k] = level_row0 + row;
    const scalar_t wx = (k & 1) ? c.frac[0] : scalar_t(1) - c.frac[0];
    const scalar_t wy = ((k >> 1) & 1) ? c.frac[1] : scalar_t(1) - c.frac[1];
    const scalar_t wz = ((k >> 2) & 1) ? c.frac[2] : scalar_t(1) - c.frac[2];
    c.w[k] = wx * wy * wz;
  }
}

void check(const torch::Tensor& x, const torch::Tensor& table, const torch::Tensor& res) {
  TORCH_CHECK(x.device().is_cpu() && table.device().is_cpu(), "hash grid kernel: CPU tensors expected");
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3, "x: expected [N, 3]");
  TORCH_CHECK(table.dim() == 2, "table: expected [rows, F]");
  TORCH_CHECK(x.scalar_type() == table.scalar_type(), "x and table: same dtype expected");
  TORCH_CHECK(res.scalar_type() == torch::kInt64 && res.dim() == 1, "resolutions: expected int64 [L]");
}

}  // namespace

torch::Tensor hash_forward(torch::Tensor x, torch::Tensor table, torch::Tensor res, int64_t T, int64_t first_level) {
  check(x, table, res);
  x = x.contiguous();
  table = table.contiguous();
  res = res.contiguous();
  const int64_t N = x.size(0), L = res.size(0), F = table.size(1);
  TORCH_CHECK(table.size(0) >= (first_level + L) * T, "table: too few rows for the levels");
  auto out = torch::empty({N, L, F}, table.options());
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hash_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* tp = table.data_ptr<scalar_t>();
    const int64_t* rp = res.data_ptr<int64_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, N, 2048, [&](int64_t n0, int64_t n1) {
      Cell<scalar_t> c;
      for (int64_t n = n0; n < n1; ++n) {
        for (int64_t l = 0; l < L; ++l) {
          cell_of(xp + 3 * n, rp[l], T, (first_level + l) * T, c);
          scalar_t* o = op + (n * L + l) * F;
          for (int64_t f = 0; f < F; ++f) o[f] = 0;
          for (int k = 0; k < 8; ++k) {
            const scalar_t* row = tp + c.rows[k] * F;
            for (int64_t f = 0; f < F; ++f) o[f] += c.w[k] * row[f];
          }
        }
      }
    });
  });
  return out;
}

std::vector<torch::Tensor> hash_backward(torch::Tensor grad_out, torch::Tensor x, torch::Tensor table, torch::Tensor res,
                                         int64_t T, int64_t first_level, bool need_table, bool need_x) {
  check(x, table, res);
  x = x.contiguous();
  table = table.contiguous();
  res = res.contiguous();
  grad_out = grad_out.contiguous().to(table.scalar_type());
  const int64_t N = x.size(0), L = res.size(0), F = table.size(1);
  TORCH_CHECK(grad_out.size(0) == N && grad_out.size(1) == L && grad_out.size(2) == F, "grad_out: expected [N, L, F]");
  torch::Tensor gt = need_table ? torch::zeros_like(table) : torch::Tensor();
  torch::Tensor gx = need_x ? torch::zeros_like(x) : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hash_backward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* tp = table.data_ptr<scalar_t>();
    const int64_t* rp = res.data_ptr<int64_t>();
    const scalar_t* gp = grad_out.data_ptr<scalar_t>();
    if (need_table) {
      scalar_t* gtp = gt.data_ptr<scalar_t>();
      // levels own disjoint table rows: one level per task, no atomics
      at::parallel_for(0, L, 1, [&](int64_t l0, int64_t l1) {
        Cell<scalar_t> c;
        for (int64_t l = l0; l < l1; ++l) {
          for (int64_t n = 0; n < N; ++n) {
            cell_of(xp + 3 * n, rp[l], T, (first_level + l) * T, c);
            const scalar_t* g = gp + (n * L + l) * F;
            for (int k = 0; k < 8; ++k) {
              scalar_t* row = gtp + c.rows[k] * F;
              for (int64_t f = 0; f < F; ++f) row[f] += c.w[k] * g[f];
            }
          }
        }
      });
    }
    if (need_x) {
      scalar_t* gxp = gx.data_ptr<scalar_t>();
      at::parallel_for(0, N, 2048, [&](int64_t n0, int64_t n1) {
        Cell<scalar_t> c;
        for (int64_t n = n0; n < n1; ++n) {
          const scalar_t* xn = xp + 3 * n;
          scalar_t acc[3] = {0, 0, 0};
          for (int64_t l = 0; l < L; ++l) {
            cell_of(xn, rp[l], T, (first_level + l) * T, c);
            const scalar_t* g = gp + (n * L + l) * F;
            scalar_t lev[3] = {0, 0, 0};
            for (int k = 0; k < 8; ++k) {
              const scalar_t* row = tp + c.rows[k] * F;
              scalar_t gf = 0;
              for (int64_t f = 0; f < F; ++f) gf += row[f] * g[f];
              const int bx = k & 1, by = (k >> 1) & 1, bz = (k >> 2) & 1;
              const scalar_t wx = bx ? c.frac[0] : 1 - c.frac[0];
              const scalar_t wy = by ? c.frac[1] : 1 - c.frac[1];
              const scalar_t wz = bz ? c.frac[2] : 1 - c.frac[2];
              lev[0] += gf * (bx ? 1 : -1) * wy * wz;
              lev[1] += gf * (by ? 1 : -1) * wx * wz;
              lev[2] += gf * (bz ? 1 : -1) * wx * wy;
            }
            const scalar_t r = scalar_t(rp[l]);
            for (int d = 0; d < 3; ++d) acc[d] += lev[d] * r;
          }
          for (int d = 0; d < 3; ++d) gxp[3 * n + d] = (xn[d] > 0 && xn[d] < 1) ? acc[d] : scalar_t(0);
        }
      });
    }
  });
  return {gt, gx};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("hash_forward", &hash_forward, "hash-grid encoding: x [N, 3], table [L*T, F], res [L] -> [N, L, F]");
  m.def("hash_backward", &hash_backward, "gradients of hash_forward -> (grad_table, grad_x)");
}
