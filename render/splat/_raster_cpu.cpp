// Fused CPU tile rasterizer of 3D Gaussian splatting (render.splat._torch_raster), forward and
// backward, after gsplat's rasterize_to_pixels kernels (Apache-2.0), one CPU thread per tile
// (at::parallel_for: built with -fopenmp, see render/_cpp.py).
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

// Beyond this sigma, o exp(-sigma) < 1/255 for sure (a margin above log(255 o)), so the pair is
// skipped; pairs below it take the exact alpha test, so results are unchanged.
template <typename scalar_t>
inline scalar_t sigma_cut(scalar_t op) {
  return op > 0 ? scalar_t(std::log(double(op) * 255.0) + 1e-3) : scalar_t(-1);
}

// Smallest sigma = a x^2 / 2 + c y^2 / 2 + b x y over the rectangle [x0, x1] x [y0, y1] of
// offsets (pixel centre - mean), for a positive definite conic: 0 where the rectangle holds the
// mean, else the least of the four edge minima (each a clamped 1D parabola vertex). -1 (keep)
// for a conic that is not positive definite or not finite.
inline double min_sigma_rect(double a, double b, double c, double x0, double x1, double y0, double y1) {
  if (!(a > 0 && c > 0 && a * c - b * b > 0)) return -1;
  if (x0 <= 0 && 0 <= x1 && y0 <= 0 && 0 <= y1) return 0;
  auto q = [&](double x, double y) { return 0.5 * (a * x * x + c * y * y) + b * x * y; };
  double m = INFINITY;
  for (double x : {x0, x1}) m = std::min(m, q(x, std::min(std::max(-b * x / c, y0), y1)));
  for (double y : {y0, y1}) m = std::min(m, q(std::min(std::max(-b * y / a, x0), x1), y));
  return m;
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

// Tile lists: Gaussian k (already in front-to-back order) covers tiles [x0, x1] x [y0, y1] of its
// bounding box. With feats [N, 10] given (W, H, s > 0), a (Gaussian, tile) pair is left out where
// no pixel centre of the tile can reach alpha >= 1/255: the least sigma over the tile's pixel
// rectangle exceeds log(255 o) + 5e-4 (the compositor's cut is log(255 o) + 1e-3; the margin
// covers float32 rounding of per-pixel sigma), so the composite is unchanged.
std::vector<torch::Tensor> bin_tiles_impl(torch::Tensor ids, torch::Tensor x0, torch::Tensor x1,
                                          torch::Tensor y0, torch::Tensor y1, int64_t ntx, int64_t nty,
                                          const torch::Tensor* feats, int64_t W, int64_t H, int64_t s) {
  TORCH_CHECK(ids.scalar_type() == torch::kInt64, "ids: int64");
  TORCH_CHECK(x0.scalar_type() == torch::kInt64, "tile bounds: int64");
  ids = ids.contiguous(); x0 = x0.contiguous(); x1 = x1.contiguous();
  y0 = y0.contiguous(); y1 = y1.contiguous();
  const int64_t M = ids.numel(), T = ntx * nty;
  const int64_t *ip = ids.data_ptr<int64_t>(), *x0p = x0.data_ptr<int64_t>(),
                *x1p = x1.data_ptr<int64_t>(), *y0p = y0.data_ptr<int64_t>(),
                *y1p = y1.data_ptr<int64_t>();
  // keep[j]: the j-th candidate pair in (k, ty, tx) order is binned
  std::vector<uint8_t> keep;
  if (feats) {
    TORCH_CHECK(feats->dim() == 2 && feats->size(1) == 10, "feats: expected [N, 10]");
    const torch::Tensor f64 = feats->to(torch::kFloat64).contiguous();
    const double* fp = f64.data_ptr<double>();
    std::vector<int64_t> off(M + 1, 0);
    for (int64_t k = 0; k < M; ++k) off[k + 1] = off[k] + (x1p[k] - x0p[k] + 1) * (y1p[k] - y0p[k] + 1);
    keep.assign(off[M], 1);
    at::parallel_for(0, M, 256, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        const double* f = fp + 10 * ip[k];
        const double lim = f[5] > 0 ? std::log(f[5] * 255.0) + 5e-4 : -1.0;
        int64_t j = off[k];
        for (int64_t ty = y0p[k]; ty <= y1p[k]; ++ty)
          for (int64_t tx = x0p[k]; tx <= x1p[k]; ++tx, ++j) {
            const double px0 = double(tx * s), py0 = double(ty * s);
            const double px1 = double(std::min(tx * s + s, W) - 1), py1 = double(std::min(ty * s + s, H) - 1);
            const double m = min_sigma_rect(f[2], f[3], f[4], px0 - f[0], px1 - f[0], py0 - f[1], py1 - f[1]);
            keep[j] = !(m > lim);
          }
      }
    });
  }
  auto start = torch::zeros({T + 1}, torch::kInt64);
  int64_t* sp = start.data_ptr<int64_t>();
  int64_t j = 0;
  for (int64_t k = 0; k < M; ++k)
    for (int64_t ty = y0p[k]; ty <= y1p[k]; ++ty)
      for (int64_t tx = x0p[k]; tx <= x1p[k]; ++tx, ++j)
        if (keep.empty() || keep[j]) sp[ty * ntx + tx + 1] += 1;
  for (int64_t t = 0; t < T; ++t) sp[t + 1] += sp[t];
  auto gauss = torch::empty({sp[T]}, torch::kInt32);
  int32_t* gp = gauss.data_ptr<int32_t>();
  std::vector<int64_t> fill(sp, sp + T);
  j = 0;
  for (int64_t k = 0; k < M; ++k)
    for (int64_t ty = y0p[k]; ty <= y1p[k]; ++ty)
      for (int64_t tx = x0p[k]; tx <= x1p[k]; ++tx, ++j)
        if (keep.empty() || keep[j]) gp[fill[ty * ntx + tx]++] = int32_t(ip[k]);
  return {start, gauss};
}

std::vector<torch::Tensor> bin_tiles(torch::Tensor ids, torch::Tensor x0, torch::Tensor x1, torch::Tensor y0,
                                     torch::Tensor y1, int64_t ntx, int64_t nty) {
  return bin_tiles_impl(ids, x0, x1, y0, y1, ntx, nty, nullptr, 0, 0, 0);
}

std::vector<torch::Tensor> bin_tiles_culled(torch::Tensor ids, torch::Tensor x0, torch::Tensor x1,
                                            torch::Tensor y0, torch::Tensor y1, int64_t ntx, int64_t nty,
                                            torch::Tensor feats, int64_t W, int64_t H, int64_t s) {
  return bin_tiles_impl(ids, x0, x1, y0, y1, ntx, nty, &feats, W, H, s);
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

template <typename scalar_t>
std::vector<scalar_t> sigma_cuts(const scalar_t* fp, int64_t N) {
  std::vector<scalar_t> cut(N);
  at::parallel_for(0, N, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) cut[i] = sigma_cut(fp[10 * i + 5]);
  });
  return cut;
}

// The tile's rows (pixel centres y = py0 + r, 0 <= r < ny) where some pixel can have sigma <= cut,
// as [r0, r1] (empty: r1 < r0). At row offset dy the least sigma over x is
// dy^2 (a c - b^2) / (2 a), so rows with dy^2 > 2 a cut / (a c - b^2) are all past the cut
// (tiny relative margin for rounding; skipped pixels past the cut are skipped anyway, as
// o exp(-cut) < 1/255). A conic that is not positive definite keeps every row; a non-finite mean
// none (its sigma is NaN, which no test passes).
inline void row_span(double my, double a, double b, double c, double cut, double py0, int64_t ny, int64_t& r0,
                     int64_t& r1) {
  r0 = 0; r1 = ny - 1;
  const double det = a * c - b * b;
  if (!(a > 0 && det > 0)) return;
  if (!(cut >= 0)) { r1 = -1; return; }
  const double h = std::sqrt(2.0 * a * cut / det) * (1.0 + 1e-9) + 1e-9;
  const double lo = std::ceil(my - h - py0), hi = std::floor(my + h - py0);
  if (!(lo <= hi) || hi < 0 || lo > double(ny - 1)) { r1 = -1; return; }
  r0 = int64_t(std::max(lo, 0.0));
  r1 = int64_t(std::min(hi, double(ny - 1)));
}

// One Gaussian f over pixels [p0, p1) of a tile (structure-of-arrays state), forward: the
// compositing rules of the header. Returns how many pixels stopped at it.
template <typename scalar_t>
int64_t forward_one(const scalar_t* f, scalar_t cut, int32_t kk, int64_t p0, int64_t p1, scalar_t amax,
                    scalar_t amin, scalar_t tmin, const scalar_t* __restrict__ px, const scalar_t* __restrict__ py,
                    scalar_t* __restrict__ Tp, scalar_t* __restrict__ A0, scalar_t* __restrict__ A1,
                    scalar_t* __restrict__ A2, scalar_t* __restrict__ A3, char* __restrict__ done,
                    int32_t* __restrict__ L) {
  const scalar_t mx = f[0], my = f[1], ca = f[2], cb = f[3], cc = f[4], op = f[5];
  const scalar_t f0 = f[6], f1 = f[7], f2 = f[8], f3 = f[9];
  int64_t stopped = 0;
  for (int64_t p = p0; p < p1; ++p) {
    if (done[p]) continue;
    const scalar_t dx = px[p] - mx, dy = py[p] - my;
    const scalar_t sigma = scalar_t(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy;
    if (sigma < 0 || sigma > cut) continue;
    const scalar_t alpha = std::min(amax, op * std::exp(-sigma));
    if (alpha < amin) continue;
    const scalar_t T0 = Tp[p];
    const scalar_t Tn = T0 * (1 - alpha);
    if (Tn <= tmin) { done[p] = 1; ++stopped; continue; }
    const scalar_t w = alpha * T0;
    A0[p] += w * f0; A1[p] += w * f1; A2[p] += w * f2; A3[p] += w * f3;
    Tp[p] = Tn;
    L[p] = kk;
  }
  return stopped;
}

// Backward of one Gaussian (list index kk) over pixels [p0, p1) of a tile, walking back to front:
// updates the per-pixel transmittance Tp (T_{i+1} -> T_i) and the colour behind, writes the
// pair's gradient row o[10] (d mean x, y, conic a, b, c, opacity, r, g, b, z).
template <typename scalar_t>
void backward_one(const scalar_t* f, scalar_t cut, int32_t kk, int64_t p0, int64_t p1, scalar_t amax,
                  scalar_t amin, const scalar_t* __restrict__ px, const scalar_t* __restrict__ py,
                  scalar_t* __restrict__ Tp, scalar_t* __restrict__ behind, const scalar_t* __restrict__ gT,
                  const scalar_t* __restrict__ G0, const scalar_t* __restrict__ G1,
                  const scalar_t* __restrict__ G2, const scalar_t* __restrict__ G3,
                  const int32_t* __restrict__ L, scalar_t* __restrict__ o) {
  const scalar_t mx = f[0], my = f[1], ca = f[2], cb = f[3], cc = f[4], op = f[5];
  const scalar_t f0 = f[6], f1 = f[7], f2 = f[8], f3 = f[9];
  scalar_t s_mx = 0, s_my = 0, s_a = 0, s_b = 0, s_c = 0, s_o = 0, s_0 = 0, s_1 = 0, s_2 = 0, s_3 = 0;
  for (int64_t p = p0; p < p1; ++p) {
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
    const scalar_t gf = G0[p] * f0 + G1[p] * f1 + G2[p] * f2 + G3[p] * f3;
    s_0 += w * G0[p]; s_1 += w * G1[p]; s_2 += w * G2[p]; s_3 += w * G3[p];
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
  o[0] = s_mx; o[1] = s_my; o[2] = s_a; o[3] = s_b; o[4] = s_c; o[5] = s_o;
  o[6] = s_0; o[7] = s_1; o[8] = s_2; o[9] = s_3;
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
    const std::vector<scalar_t> cuts = sigma_cuts(fp, feats.size(0));
    for_each_tile(T, [&](int64_t t) {
      const int64_t b = sp[t], e = sp[t + 1];
      if (b == e) return;
      const int64_t P = s * s;
      thread_local std::vector<scalar_t> buf;
      thread_local std::vector<int32_t> Lbuf;
      thread_local std::vector<char> dbuf;
      buf.resize(7 * P); Lbuf.resize(P); dbuf.resize(P);
      scalar_t* __restrict__ Tp = buf.data();
      scalar_t* __restrict__ A0 = Tp + P;
      scalar_t* __restrict__ A1 = A0 + P;
      scalar_t* __restrict__ A2 = A1 + P;
      scalar_t* __restrict__ A3 = A2 + P;
      scalar_t* __restrict__ px = A3 + P;
      scalar_t* __restrict__ py = px + P;
      char* __restrict__ done = dbuf.data();  // the pixel stopped
      int32_t* __restrict__ L = Lbuf.data();
      const auto g = tile_geom<scalar_t>(t, ntx, s, W, H);
      const int64_t np = g.nx * g.ny;
      for (int64_t p = 0; p < np; ++p) {
        Tp[p] = 1; L[p] = -1; done[p] = 0;
        A0[p] = A1[p] = A2[p] = A3[p] = 0;
        px[p] = scalar_t(g.px0 + p % g.nx);
        py[p] = scalar_t(g.py0 + p / g.nx);
      }
      int64_t n_live = np;
      for (int64_t k = b; k < e && n_live > 0; ++k) {
        const int64_t id = gp[k];
        const scalar_t* f = fp + 10 * id;
        int64_t r0, r1;
        row_span(f[1], f[2], f[3], f[4], cuts[id], double(g.py0), g.ny, r0, r1);
        if (r1 < r0) continue;
        n_live -= forward_one(f, cuts[id], int32_t(k - b), r0 * g.nx, (r1 + 1) * g.nx, amax, amin, tmin, px, py,
                              Tp, A0, A1, A2, A3, done, L);
      }
      for (int64_t p = 0; p < np; ++p) {
        const int64_t pix = (g.py0 + p / g.nx) * W + g.px0 + p % g.nx;
        ap[4 * pix] = A0[p]; ap[4 * pix + 1] = A1[p]; ap[4 * pix + 2] = A2[p]; ap[4 * pix + 3] = A3[p];
        tp[pix] = Tp[p];
        lp[pix] = L[p];
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
  auto buf = torch::empty({total, 10}, feats.options());  // every row is written below
  auto g_feats = torch::zeros({N, 10}, feats.options());
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "raster_backward", [&] {
    const scalar_t* fp = feats.data_ptr<scalar_t>();
    const scalar_t* tfp = T_final.data_ptr<scalar_t>();
    const scalar_t* gap = g_acc.data_ptr<scalar_t>();
    const scalar_t* gtp = g_T.data_ptr<scalar_t>();
    scalar_t* bp = buf.data_ptr<scalar_t>();
    const scalar_t amax = scalar_t(max_alpha), amin = scalar_t(kAlphaMin);
    const std::vector<scalar_t> cuts = sigma_cuts(fp, N);
    for_each_tile(T, [&](int64_t t) {
      const int64_t b = sp[t], e = sp[t + 1];
      if (b == e) return;
      const int64_t P = s * s;
      thread_local std::vector<scalar_t> vbuf;
      thread_local std::vector<int32_t> Lbuf;
      vbuf.resize(9 * P); Lbuf.resize(P);
      scalar_t* __restrict__ Tp = vbuf.data();
      scalar_t* __restrict__ behind = Tp + P;
      scalar_t* __restrict__ gT = behind + P;
      scalar_t* __restrict__ G0 = gT + P;
      scalar_t* __restrict__ G1 = G0 + P;
      scalar_t* __restrict__ G2 = G1 + P;
      scalar_t* __restrict__ G3 = G2 + P;
      scalar_t* __restrict__ px = G3 + P;
      scalar_t* __restrict__ py = px + P;
      int32_t* __restrict__ L = Lbuf.data();
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
        G0[p] = gap[4 * pix]; G1[p] = gap[4 * pix + 1]; G2[p] = gap[4 * pix + 2]; G3[p] = gap[4 * pix + 3];
        px[p] = scalar_t(g.px0 + p % g.nx);
        py[p] = scalar_t(g.py0 + p / g.nx);
      }
      // pairs behind every pixel's last contributor get no gradient
      for (int64_t k = b + max_last + 1; k < e; ++k)
        for (int c = 0; c < 10; ++c) bp[10 * k + c] = 0;
      for (int64_t kk = max_last; kk >= 0; --kk) {
        const int64_t k = b + kk;
        const int64_t id = gp[k];
        const scalar_t* f = fp + 10 * id;
        int64_t r0, r1;
        row_span(f[1], f[2], f[3], f[4], cuts[id], double(g.py0), g.ny, r0, r1);
        if (r1 < r0) r0 = r1 = 0;  // an empty range: the pair's gradient row is zero
        else ++r1;
        backward_one(f, cuts[id], int32_t(kk), r0 * g.nx, r1 * g.nx, amax, amin, px, py, Tp, behind, gT, G0, G1,
                     G2, G3, L, bp + 10 * k);
      }
    });
    // Per-Gaussian sums in intersection order (deterministic, no atomics): each thread owns a
    // contiguous range of Gaussian ids and adds the whole rows of its pairs in one pass.
    scalar_t* gfp = g_feats.data_ptr<scalar_t>();
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (N + 1023) / 1024));
    at::parallel_for(0, nt, 1, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t lo = N * j / nt, hi = N * (j + 1) / nt;
        for (int64_t k = 0; k < total; ++k) {
          const int64_t id = gp[k];
          if (id < lo || id >= hi) continue;
          scalar_t* o = gfp + 10 * id;
          const scalar_t* r = bp + 10 * k;
          for (int c = 0; c < 10; ++c) o[c] += r[c];
        }
      }
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

// How many threads at::parallel_for runs a loop on here (tests: 1 where the extension was built
// without OpenMP, whatever torch.set_num_threads says).
int64_t parallel_threads() {
  std::vector<std::atomic<int>> seen(256);
  at::parallel_for(0, 1024, 1, [&](int64_t, int64_t) {
    seen[std::min<int64_t>(at::get_thread_num(), 255)] = 1;
  });
  int64_t n = 0;
  for (auto& v : seen) n += v.load();
  return n;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bin_tiles", &bin_tiles, "tile lists: (ids, x0, x1, y0, y1 [M] int64, ntx, nty) -> (start [T+1], ids [I])");
  m.def("bin_tiles_culled", &bin_tiles_culled,
        "bin_tiles without the (Gaussian, tile) pairs no pixel of which reaches alpha 1/255: "
        "(ids, x0, x1, y0, y1, ntx, nty, feats [N, 10], W, H, tile size) -> (start, ids)");
  m.def("parallel_threads", &parallel_threads, "threads at::parallel_for uses (tests)");
  m.def("forward", &raster_forward, "composite -> (acc [H, W, 4], T [H, W], last [H, W] int32)");
  m.def("backward", &raster_backward, "gradients of forward w.r.t. feats [N, 10]");
  m.def("project_forward", &project_forward, "EWA projection -> (means2d [N, 2], cov2d [N, 2, 2], z [N])");
  m.def("project_backward", &project_backward, "gradients of project_forward w.r.t. means, quats, log_scales");
}
