// Fused CPU tile rasterizer of 3D Gaussian splatting (render.splat._torch_raster), forward and
// backward, after gsplat's rasterize_to_pixels kernels (Apache-2.0), one CPU thread per tile.
//
// Inputs are the projected Gaussians the PyTorch code computes (autograd keeps projection, SH and
// the conic): feats [N, 10] = (mean x, mean y, conic a, b, c, opacity, r, g, b, z), and a tile
// list of Gaussian ids per tile in front-to-back order (bin_tiles). Per pixel (x, y), centre at
// integer coordinates, d = (x, y) - mean:
//   sigma = a dx^2 / 2 + c dy^2 / 2 + b dx dy,  alpha = min(max_alpha, o exp(-sigma)),
//   skipped where sigma < 0 or alpha < 1/255; the pixel stops before the Gaussian that would take
//   its transmittance to <= 1e-4; acc += alpha T f, T *= 1 - alpha.
// Outputs acc [H, W, 4] (premultiplied r, g, b, z), the final transmittance T [H, W] and the
// index (in the tile's list) of the last contributing Gaussian per pixel, -1 for none.
//
// Backward walks each pixel's list from its last Gaussian to the front, recovering the
// transmittance in front of Gaussian i as T_i = T_{i+1} / (1 - alpha_i) (gsplat), with
//   dL/dalpha_i = T_i (g . f_i) - (sum_{j>i} w_j g . f_j + gT T_final) / (1 - alpha_i),
// zero where alpha was clamped. Per-intersection gradients are written to their own row and
// summed per Gaussian in a fixed order afterwards: deterministic, no atomics.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr double kAlphaMin = 1.0 / 255.0;
constexpr double kTransMin = 1e-4;

// Tile lists: Gaussian k (already in front-to-back order) covers tiles [x0, x1] x [y0, y1].
std::vector<torch::Tensor> bin_tiles(torch::Tensor ids, torch::Tensor x0, torch::Tensor x1,
                                     torch::Tensor y0, torch::Tensor y1, int64_t ntx, int64_t nty) {
  TORCH_CHECK(ids.scalar_type() == torch::kInt64, "ids: int64");
  TORCH_CHECK(x0.scalar_type() == torch::kInt64, "tile bounds: int64");
  ids = ids.contiguous(); x0 = x0.contiguous(); x1 = x1.contiguous();
  y0 = y0.contiguous(); y1 = y1.contiguous();
  const int64_t M = ids.numel(), T = ntx * nty;
  const int64_t *ip = ids.data_ptr<int64_t>(), *x0p = x0.data_ptr<int64_t>(),
                *x1p = x1.data_ptr<int64_t>(), *y0p = y0.data_ptr<int64_t>(),
                *y1p = y1.data_ptr<int64_t>();
  auto start = torch::zeros({T + 1}, torch::kInt64);
  int64_t* sp = start.data_ptr<int64_t>();
  for (int64_t k = 0; k < M; ++k)
    for (int64_t ty = y0p[k]; ty <= y1p[k]; ++ty)
      for (int64_t tx = x0p[k]; tx <= x1p[k]; ++tx) sp[ty * ntx + tx + 1] += 1;
  for (int64_t t = 0; t < T; ++t) sp[t + 1] += sp[t];
  auto gauss = torch::empty({sp[T]}, torch::kInt32);
  int32_t* gp = gauss.data_ptr<int32_t>();
  std::vector<int64_t> fill(sp, sp + T);
  for (int64_t k = 0; k < M; ++k)
    for (int64_t ty = y0p[k]; ty <= y1p[k]; ++ty)
      for (int64_t tx = x0p[k]; tx <= x1p[k]; ++tx) gp[fill[ty * ntx + tx]++] = int32_t(ip[k]);
  return {start, gauss};
}

// Tiles differ a lot in work (the centre of a view holds most Gaussians): threads take the next
// tile from a shared counter instead of a fixed contiguous range.
template <typename F>
void for_each_tile(int64_t T, const F& body) {
  std::atomic<int64_t> next(0);
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), T));
  at::parallel_for(0, nt, 1, [&](int64_t, int64_t) {
    for (int64_t t = next++; t < T; t = next++) body(t);
  });
}

// Beyond this sigma, o exp(-sigma) < 1/255 for sure (a margin above log(255 o)), so the pair is
// skipped without its exp; pairs below it take the exact test, so results are unchanged.
template <typename scalar_t>
inline scalar_t sigma_cut(scalar_t op) {
  return op > 0 ? scalar_t(std::log(double(op) * 255.0) + 1e-3) : scalar_t(-1);
}

template <typename scalar_t>
struct TileGeom {
  int64_t px0, py0, nx, ny;  // first pixel and pixel counts of the tile (clipped to the image)
};

template <typename scalar_t>
inline TileGeom<scalar_t> tile_geom(int64_t t, int64_t ntx, int64_t s, int64_t W, int64_t H) {
  TileGeom<scalar_t> g;
  g.px0 = (t % ntx) * s;
  g.py0 = (t / ntx) * s;
  g.nx = std::min<int64_t>(s, W - g.px0);
  g.ny = std::min<int64_t>(s, H - g.py0);
  return g;
}

std::vector<torch::Tensor> raster_forward(torch::Tensor feats, torch::Tensor start, torch::Tensor gauss,
                                          int64_t W, int64_t H, int64_t s, double max_alpha) {
  TORCH_CHECK(feats.dim() == 2 && feats.size(1) == 10, "feats: expected [N, 10]");
  feats = feats.contiguous();
  const int64_t ntx = (W + s - 1) / s, nty = (H + s - 1) / s, T = ntx * nty;
  TORCH_CHECK(start.numel() == T + 1, "start: expected [num_tiles + 1]");
  auto acc = torch::zeros({H, W, 4}, feats.options());
  auto Tout = torch::ones({H, W}, feats.options());
  auto last = torch::full({H, W}, -1, torch::dtype(torch::kInt32));
  const int64_t* sp = start.data_ptr<int64_t>();
  const int32_t* gp = gauss.data_ptr<int32_t>();
  int32_t* lp = last.data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "raster_forward", [&] {
    const scalar_t* fp = feats.data_ptr<scalar_t>();
    scalar_t* ap = acc.data_ptr<scalar_t>();
    scalar_t* tp = Tout.data_ptr<scalar_t>();
    const scalar_t amax = scalar_t(max_alpha), amin = scalar_t(kAlphaMin), tmin = scalar_t(kTransMin);
    for_each_tile(T, [&](int64_t t) {
      const int64_t P = s * s;
      thread_local std::vector<scalar_t> Tp, A, px, py;
      thread_local std::vector<int32_t> L;
      thread_local std::vector<char> done;
      Tp.resize(P); A.resize(4 * P); px.resize(P); py.resize(P); L.resize(P); done.resize(P);
      {
        const int64_t b = sp[t], e = sp[t + 1];
        if (b == e) return;
        const auto g = tile_geom<scalar_t>(t, ntx, s, W, H);
        const int64_t np = g.nx * g.ny;
        for (int64_t p = 0; p < np; ++p) {
          Tp[p] = 1; L[p] = -1; done[p] = 0;
          A[4 * p] = A[4 * p + 1] = A[4 * p + 2] = A[4 * p + 3] = 0;
          px[p] = scalar_t(g.px0 + p % g.nx);
          py[p] = scalar_t(g.py0 + p / g.nx);
        }
        int64_t n_done = 0;
        for (int64_t k = b; k < e && n_done < np; ++k) {
          const scalar_t* f = fp + 10 * int64_t(gp[k]);
          const scalar_t mx = f[0], my = f[1], ca = f[2], cb = f[3], cc = f[4], op = f[5];
          const scalar_t cut = sigma_cut(op);
          const int32_t kk = int32_t(k - b);
          for (int64_t p = 0; p < np; ++p) {
            if (done[p]) continue;
            const scalar_t dx = px[p] - mx, dy = py[p] - my;
            const scalar_t sigma = scalar_t(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy;
            if (sigma < 0 || sigma > cut) continue;
            const scalar_t alpha = std::min(amax, op * std::exp(-sigma));
            if (alpha < amin) continue;
            const scalar_t Tn = Tp[p] * (1 - alpha);
            if (Tn <= tmin) { done[p] = 1; ++n_done; continue; }
            const scalar_t w = alpha * Tp[p];
            A[4 * p] += w * f[6]; A[4 * p + 1] += w * f[7];
            A[4 * p + 2] += w * f[8]; A[4 * p + 3] += w * f[9];
            Tp[p] = Tn;
            L[p] = kk;
          }
        }
        for (int64_t p = 0; p < np; ++p) {
          const int64_t pix = (g.py0 + p / g.nx) * W + g.px0 + p % g.nx;
          for (int c = 0; c < 4; ++c) ap[4 * pix + c] = A[4 * p + c];
          tp[pix] = Tp[p];
          lp[pix] = L[p];
        }
      }
    });
  });
  return {acc, Tout, last};
}

torch::Tensor raster_backward(torch::Tensor feats, torch::Tensor start, torch::Tensor gauss, int64_t W,
                              int64_t H, int64_t s, double max_alpha, torch::Tensor T_final,
                              torch::Tensor last, torch::Tensor g_acc, torch::Tensor g_T) {
  feats = feats.contiguous();
  T_final = T_final.contiguous(); last = last.contiguous();
  g_acc = g_acc.contiguous(); g_T = g_T.contiguous();
  const int64_t ntx = (W + s - 1) / s, nty = (H + s - 1) / s, T = ntx * nty, N = feats.size(0);
  const int64_t* sp = start.data_ptr<int64_t>();
  const int32_t* gp = gauss.data_ptr<int32_t>();
  const int32_t* lp = last.data_ptr<int32_t>();
  const int64_t total = gauss.numel();
  auto buf = torch::zeros({total, 10}, feats.options());
  auto g_feats = torch::zeros({N, 10}, feats.options());
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "raster_backward", [&] {
    const scalar_t* fp = feats.data_ptr<scalar_t>();
    const scalar_t* tfp = T_final.data_ptr<scalar_t>();
    const scalar_t* gap = g_acc.data_ptr<scalar_t>();
    const scalar_t* gtp = g_T.data_ptr<scalar_t>();
    scalar_t* bp = buf.data_ptr<scalar_t>();
    const scalar_t amax = scalar_t(max_alpha), amin = scalar_t(kAlphaMin);
    for_each_tile(T, [&](int64_t t) {
      const int64_t P = s * s;
      thread_local std::vector<scalar_t> Tp, behind, gT, G, px, py;
      thread_local std::vector<int32_t> L;
      Tp.resize(P); behind.resize(P); gT.resize(P); G.resize(4 * P); px.resize(P); py.resize(P);
      L.resize(P);
      {
        const int64_t b = sp[t], e = sp[t + 1];
        if (b == e) return;
        const auto g = tile_geom<scalar_t>(t, ntx, s, W, H);
        const int64_t np = g.nx * g.ny;
        int32_t max_last = -1;
        for (int64_t p = 0; p < np; ++p) {
          const int64_t pix = (g.py0 + p / g.nx) * W + g.px0 + p % g.nx;
          Tp[p] = tfp[pix];
          L[p] = lp[pix];
          max_last = std::max(max_last, L[p]);
          behind[p] = 0;
          gT[p] = gtp[pix] * tfp[pix];
          for (int c = 0; c < 4; ++c) G[4 * p + c] = gap[4 * pix + c];
          px[p] = scalar_t(g.px0 + p % g.nx);
          py[p] = scalar_t(g.py0 + p / g.nx);
        }
        for (int64_t kk = max_last; kk >= 0; --kk) {
          const int64_t k = b + kk;
          const scalar_t* f = fp + 10 * int64_t(gp[k]);
          const scalar_t mx = f[0], my = f[1], ca = f[2], cb = f[3], cc = f[4], op = f[5];
          const scalar_t cut = sigma_cut(op);
          scalar_t s_mx = 0, s_my = 0, s_a = 0, s_b = 0, s_c = 0, s_o = 0;
          scalar_t s_f[4] = {0, 0, 0, 0};
          for (int64_t p = 0; p < np; ++p) {
            if (kk > L[p]) continue;
            const scalar_t dx = px[p] - mx, dy = py[p] - my;
            const scalar_t sigma = scalar_t(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy;
            if (sigma < 0 || sigma > cut) continue;
            const scalar_t ex = std::exp(-sigma);
            const scalar_t raw = op * ex;
            const scalar_t alpha = std::min(amax, raw);
            if (alpha < amin) continue;
            const scalar_t om = 1 - alpha;
            const scalar_t Ti = Tp[p] / om;
            const scalar_t w = alpha * Ti;
            const scalar_t* gg = &G[4 * p];
            const scalar_t gf = gg[0] * f[6] + gg[1] * f[7] + gg[2] * f[8] + gg[3] * f[9];
            for (int c = 0; c < 4; ++c) s_f[c] += w * gg[c];
            if (raw < amax) {
              const scalar_t d_alpha = Ti * gf - (behind[p] + gT[p]) / om;
              const scalar_t d_sigma = -d_alpha * alpha;
              s_o += d_alpha * ex;
              s_mx += -d_sigma * (ca * dx + cb * dy);
              s_my += -d_sigma * (cc * dy + cb * dx);
              s_a += scalar_t(0.5) * d_sigma * dx * dx;
              s_b += d_sigma * dx * dy;
              s_c += scalar_t(0.5) * d_sigma * dy * dy;
            }
            behind[p] += w * gf;
            Tp[p] = Ti;
          }
          scalar_t* o = bp + 10 * k;
          o[0] = s_mx; o[1] = s_my; o[2] = s_a; o[3] = s_b; o[4] = s_c; o[5] = s_o;
          for (int c = 0; c < 4; ++c) o[6 + c] = s_f[c];
        }
      }
    });
    // per-Gaussian sums in intersection order (deterministic); parallel over feature columns
    scalar_t* gfp = g_feats.data_ptr<scalar_t>();
    at::parallel_for(0, 10, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t k = 0; k < total; ++k) gfp[10 * int64_t(gp[k]) + c] += bp[10 * k + c];
    });
  });
  return g_feats;
}

// EWA projection of 3D Gaussians (render.splat._torch_raster.project_gaussians), forward and
// backward per Gaussian, parallel over Gaussians. p = R m + t (camera frame), q normalised,
// Sigma = (Rq S)(Rq S)^T with S = exp(log_scales), J the perspective Jacobian at the point whose
// x / z, y / z are clamped to the bounds lim (gsplat), cov2d = J R Sigma R^T J^T + eps2d I,
// mean2d = (fx x / z + cx, fy y / z + cy). lim = (x_neg, x_pos, y_neg, y_pos).
template <typename scalar_t>
inline void quat_rot(const scalar_t* q, scalar_t* qn, scalar_t* Rq) {
  scalar_t n = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  n = std::max(n, scalar_t(1e-12));
  for (int k = 0; k < 4; ++k) qn[k] = q[k] / n;
  const scalar_t w = qn[0], x = qn[1], y = qn[2], z = qn[3];
  Rq[0] = 1 - 2 * (y * y + z * z); Rq[1] = 2 * (x * y - w * z); Rq[2] = 2 * (x * z + w * y);
  Rq[3] = 2 * (x * y + w * z); Rq[4] = 1 - 2 * (x * x + z * z); Rq[5] = 2 * (y * z - w * x);
  Rq[6] = 2 * (x * z - w * y); Rq[7] = 2 * (y * z + w * x); Rq[8] = 1 - 2 * (x * x + y * y);
}

std::vector<torch::Tensor> project_forward(torch::Tensor means, torch::Tensor quats, torch::Tensor log_scales,
                                           torch::Tensor R, torch::Tensor t, double fx, double fy, double cx,
                                           double cy, std::vector<double> lim, double eps2d) {
  means = means.contiguous(); quats = quats.contiguous(); log_scales = log_scales.contiguous();
  R = R.to(means.scalar_type()).contiguous(); t = t.to(means.scalar_type()).contiguous();
  const int64_t N = means.size(0);
  auto m2 = torch::empty({N, 2}, means.options());
  auto cov = torch::empty({N, 2, 2}, means.options());
  auto zo = torch::empty({N}, means.options());
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_forward", [&] {
    const scalar_t *mp = means.data_ptr<scalar_t>(), *qp = quats.data_ptr<scalar_t>(),
                   *lp = log_scales.data_ptr<scalar_t>(), *Rc = R.data_ptr<scalar_t>(), *tc = t.data_ptr<scalar_t>();
    scalar_t *m2p = m2.data_ptr<scalar_t>(), *cp = cov.data_ptr<scalar_t>(), *zp = zo.data_ptr<scalar_t>();
    const scalar_t Fx = fx, Fy = fy, Cx = cx, Cy = cy, E = eps2d;
    const scalar_t lxn = lim[0], lxp = lim[1], lyn = lim[2], lyp = lim[3];
    at::parallel_for(0, N, 1024, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const scalar_t* m = mp + 3 * i;
        scalar_t p[3];
        for (int r = 0; r < 3; ++r) p[r] = Rc[3 * r] * m[0] + Rc[3 * r + 1] * m[1] + Rc[3 * r + 2] * m[2] + tc[r];
        const scalar_t z = p[2];
        const scalar_t zs = std::abs(z) > scalar_t(1e-12) ? z : scalar_t(1e-12);
        const scalar_t tx = zs * std::min(std::max(p[0] / zs, -lxn), lxp);
        const scalar_t ty = zs * std::min(std::max(p[1] / zs, -lyn), lyp);
        const scalar_t J00 = Fx / zs, J02 = -Fx * tx / (zs * zs), J11 = Fy / zs, J12 = -Fy * ty / (zs * zs);
        scalar_t T[6];  // J R, 2 x 3
        for (int c = 0; c < 3; ++c) {
          T[c] = J00 * Rc[c] + J02 * Rc[6 + c];
          T[3 + c] = J11 * Rc[3 + c] + J12 * Rc[6 + c];
        }
        scalar_t qn[4], Rq[9];
        quat_rot(qp + 4 * i, qn, Rq);
        scalar_t M[9];
        for (int r = 0; r < 3; ++r)
          for (int c = 0; c < 3; ++c) M[3 * r + c] = Rq[3 * r + c] * std::exp(lp[3 * i + c]);
        scalar_t S[9];
        for (int r = 0; r < 3; ++r)
          for (int c = 0; c < 3; ++c) S[3 * r + c] = M[3 * r] * M[3 * c] + M[3 * r + 1] * M[3 * c + 1] + M[3 * r + 2] * M[3 * c + 2];
        scalar_t TS[6];
        for (int r = 0; r < 2; ++r)
          for (int c = 0; c < 3; ++c) TS[3 * r + c] = T[3 * r] * S[c] + T[3 * r + 1] * S[3 + c] + T[3 * r + 2] * S[6 + c];
        scalar_t* o = cp + 4 * i;
        for (int r = 0; r < 2; ++r)
          for (int c = 0; c < 2; ++c)
            o[2 * r + c] = TS[3 * r] * T[3 * c] + TS[3 * r + 1] * T[3 * c + 1] + TS[3 * r + 2] * T[3 * c + 2] + (r == c ? E : 0);
        m2p[2 * i] = Fx * p[0] / zs + Cx;
        m2p[2 * i + 1] = Fy * p[1] / zs + Cy;
        zp[i] = z;
      }
    });
  });
  return {m2, cov, zo};
}

std::vector<torch::Tensor> project_backward(torch::Tensor means, torch::Tensor quats, torch::Tensor log_scales,
                                            torch::Tensor R, torch::Tensor t, double fx, double fy,
                                            std::vector<double> lim, torch::Tensor g_m2, torch::Tensor g_cov,
                                            torch::Tensor g_z) {
  means = means.contiguous(); quats = quats.contiguous(); log_scales = log_scales.contiguous();
  R = R.to(means.scalar_type()).contiguous(); t = t.to(means.scalar_type()).contiguous();
  g_m2 = g_m2.contiguous(); g_cov = g_cov.contiguous(); g_z = g_z.contiguous();
  const int64_t N = means.size(0);
  auto gm = torch::empty({N, 3}, means.options());
  auto gq = torch::empty({N, 4}, means.options());
  auto gl = torch::empty({N, 3}, means.options());
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_backward", [&] {
    const scalar_t *mp = means.data_ptr<scalar_t>(), *qp = quats.data_ptr<scalar_t>(),
                   *lp = log_scales.data_ptr<scalar_t>(), *Rc = R.data_ptr<scalar_t>(), *tc = t.data_ptr<scalar_t>();
    const scalar_t *gm2 = g_m2.data_ptr<scalar_t>(), *gc = g_cov.data_ptr<scalar_t>(), *gzp = g_z.data_ptr<scalar_t>();
    scalar_t *gmp = gm.data_ptr<scalar_t>(), *gqp = gq.data_ptr<scalar_t>(), *glp = gl.data_ptr<scalar_t>();
    const scalar_t Fx = fx, Fy = fy;
    const scalar_t lxn = lim[0], lxp = lim[1], lyn = lim[2], lyp = lim[3];
    at::parallel_for(0, N, 1024, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const scalar_t* m = mp + 3 * i;
        scalar_t p[3];
        for (int r = 0; r < 3; ++r) p[r] = Rc[3 * r] * m[0] + Rc[3 * r + 1] * m[1] + Rc[3 * r + 2] * m[2] + tc[r];
        const bool zok = std::abs(p[2]) > scalar_t(1e-12);
        const scalar_t zs = zok ? p[2] : scalar_t(1e-12);
        const scalar_t ux = p[0] / zs, uy = p[1] / zs;
        const scalar_t cx_ = std::min(std::max(ux, -lxn), lxp), cy_ = std::min(std::max(uy, -lyn), lyp);
        const bool inx = ux >= -lxn && ux <= lxp, iny = uy >= -lyn && uy <= lyp;
        const scalar_t tx = zs * cx_, ty = zs * cy_;
        const scalar_t z2 = zs * zs;
        const scalar_t J00 = Fx / zs, J02 = -Fx * tx / z2, J11 = Fy / zs, J12 = -Fy * ty / z2;
        scalar_t T[6];
        for (int c = 0; c < 3; ++c) {
          T[c] = J00 * Rc[c] + J02 * Rc[6 + c];
          T[3 + c] = J11 * Rc[3 + c] + J12 * Rc[6 + c];
        }
        scalar_t qn[4], Rq[9], sc[3];
        quat_rot(qp + 4 * i, qn, Rq);
        for (int c = 0; c < 3; ++c) sc[c] = std::exp(lp[3 * i + c]);
        scalar_t M[9];
        for (int r = 0; r < 3; ++r)
          for (int c = 0; c < 3; ++c) M[3 * r + c] = Rq[3 * r + c] * sc[c];
        scalar_t S[9];
        for (int r = 0; r < 3; ++r)
          for (int c = 0; c < 3; ++c) S[3 * r + c] = M[3 * r] * M[3 * c] + M[3 * r + 1] * M[3 * c + 1] + M[3 * r + 2] * M[3 * c + 2];
        const scalar_t* G = gc + 4 * i;  // d loss / d cov2d, 2 x 2
        // cov2d = T S T^T: dS = T^T G T, dT = (G + G^T) T S
        scalar_t dS[9];
        for (int r = 0; r < 3; ++r)
          for (int c = 0; c < 3; ++c)
            dS[3 * r + c] = T[r] * (G[0] * T[c] + G[1] * T[3 + c]) + T[3 + r] * (G[2] * T[c] + G[3] * T[3 + c]);
        const scalar_t Gs[4] = {2 * G[0], G[1] + G[2], G[1] + G[2], 2 * G[3]};
        scalar_t TS[6];
        for (int r = 0; r < 2; ++r)
          for (int c = 0; c < 3; ++c) TS[3 * r + c] = T[3 * r] * S[c] + T[3 * r + 1] * S[3 + c] + T[3 * r + 2] * S[6 + c];
        scalar_t dT[6];
        for (int r = 0; r < 2; ++r)
          for (int c = 0; c < 3; ++c) dT[3 * r + c] = Gs[2 * r] * TS[c] + Gs[2 * r + 1] * TS[3 + c];
        // T = J R: dJ = dT R^T (only the four non-zero entries of J matter)
        const scalar_t dJ00 = dT[0] * Rc[0] + dT[1] * Rc[1] + dT[2] * Rc[2];
        const scalar_t dJ02 = dT[0] * Rc[6] + dT[1] * Rc[7] + dT[2] * Rc[8];
        const scalar_t dJ11 = dT[3] * Rc[3] + dT[4] * Rc[4] + dT[5] * Rc[5];
        const scalar_t dJ12 = dT[3] * Rc[6] + dT[4] * Rc[7] + dT[5] * Rc[8];
        scalar_t dp[3] = {0, 0, 0};
        scalar_t dzs = -Fx / z2 * dJ00 - Fy / z2 * dJ11 + 2 * Fx * tx / (z2 * zs) * dJ02 + 2 * Fy * ty / (z2 * zs) * dJ12;
        const scalar_t dtx = -Fx / z2 * dJ02, dty = -Fy / z2 * dJ12;
        // tx = zs clamp(x / zs): inside the bounds tx = x, outside zs times the bound
        if (inx) dp[0] += dtx; else dzs += cx_ * dtx;
        if (iny) dp[1] += dty; else dzs += cy_ * dty;
        // mean2d
        const scalar_t gu = gm2[2 * i], gv = gm2[2 * i + 1];
        dp[0] += Fx / zs * gu;
        dp[1] += Fy / zs * gv;
        dzs += -Fx * p[0] / z2 * gu - Fy * p[1] / z2 * gv;
        dp[2] += (zok ? dzs : scalar_t(0)) + gzp[i];
        for (int c = 0; c < 3; ++c) gmp[3 * i + c] = Rc[c] * dp[0] + Rc[3 + c] * dp[1] + Rc[6 + c] * dp[2];
        // S = M M^T: dM = (dS + dS^T) M
        scalar_t dM[9];
        for (int r = 0; r < 3; ++r)
          for (int c = 0; c < 3; ++c) {
            scalar_t v = 0;
            for (int k = 0; k < 3; ++k) v += (dS[3 * r + k] + dS[3 * k + r]) * M[3 * k + c];
            dM[3 * r + c] = v;
          }
        scalar_t dR[9];
        for (int c = 0; c < 3; ++c) {
          scalar_t ds = 0;
          for (int r = 0; r < 3; ++r) {
            ds += dM[3 * r + c] * Rq[3 * r + c];
            dR[3 * r + c] = dM[3 * r + c] * sc[c];
          }
          glp[3 * i + c] = ds * sc[c];
        }
        const scalar_t w = qn[0], x = qn[1], y = qn[2], z = qn[3];
        scalar_t dqn[4];
        dqn[0] = 2 * (-z * dR[1] + y * dR[2] + z * dR[3] - x * dR[5] - y * dR[6] + x * dR[7]);
        dqn[1] = 2 * (y * dR[1] + z * dR[2] + y * dR[3] - 2 * x * dR[4] - w * dR[5] + z * dR[6] + w * dR[7] - 2 * x * dR[8]);
        dqn[2] = 2 * (-2 * y * dR[0] + x * dR[1] + w * dR[2] + x * dR[3] + z * dR[5] - w * dR[6] + z * dR[7] - 2 * y * dR[8]);
        dqn[3] = 2 * (-2 * z * dR[0] - w * dR[1] + x * dR[2] + w * dR[3] - 2 * z * dR[4] + y * dR[5] + x * dR[6] + y * dR[7]);
        const scalar_t* q = qp + 4 * i;
        scalar_t n = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
        const bool nok = n > scalar_t(1e-12);
        n = std::max(n, scalar_t(1e-12));
        const scalar_t dot = qn[0] * dqn[0] + qn[1] * dqn[1] + qn[2] * dqn[2] + qn[3] * dqn[3];
        for (int k = 0; k < 4; ++k) gqp[4 * i + k] = (dqn[k] - (nok ? qn[k] * dot : scalar_t(0))) / n;
      }
    });
  });
  return {gm, gq, gl};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bin_tiles", &bin_tiles, "tile lists: (ids, x0, x1, y0, y1 [M] int64, ntx, nty) -> (start [T+1], ids [I])");
  m.def("forward", &raster_forward, "composite -> (acc [H, W, 4], T [H, W], last [H, W] int32)");
  m.def("backward", &raster_backward, "gradients of forward w.r.t. feats [N, 10]");
  m.def("project_forward", &project_forward, "EWA projection -> (means2d [N, 2], cov2d [N, 2, 2], z [N])");
  m.def("project_backward", &project_backward, "gradients of project_forward w.r.t. means, quats, log_scales");
}
