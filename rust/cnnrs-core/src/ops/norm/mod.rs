//! `batch_norm` over NCHW (and (N, C) / (N, C, L)) input, PyTorch semantics.
//!
//! Training: per channel `c`, mean and biased variance over the N*H*W values
//! of that channel; `y = gamma * (x - mean) / sqrt(var + eps) + beta`; the
//! running statistics move by `momentum`:
//! `running = (1 - momentum) * running + momentum * batch_stat`, with the
//! *unbiased* variance (`var * M / (M - 1)`, `M = N*H*W`) for `running_var`.
//! Eval: the running statistics replace the batch ones.
//!
//! Backward (training), with `xhat = (x - mean) * inv_std`:
//! `dbeta = sum(g)`, `dgamma = sum(g * xhat)`,
//! `dx = gamma * inv_std / M * (M*g - sum(g) - xhat * sum(g * xhat))`.
//! Eval: `dx = g * gamma * inv_std_running`.
//! Statistics are accumulated in f64.

use std::sync::Arc;

use crate::autograd::{Backward, Var};
use crate::error::{fmt_shape, Result};
use crate::tensor::Tensor;
use crate::{arg_err, shape_err};

pub mod reference;
#[cfg(test)]
mod tests;

/// Options of a batch-norm call.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormParams {
    /// Use batch statistics (and update the running ones) instead of the
    /// running ones.
    pub training: bool,
    pub momentum: f32,
    pub eps: f32,
}

/// `(n, c, spatial)` of an `(N, C, *)` input of rank 2 to 4.
fn dims(x: &Tensor) -> Result<(usize, usize, usize)> {
    let s = x.shape();
    if s.len() < 2 || s.len() > 4 {
        return Err(shape_err!(
            "batch_norm: expected a 2-D, 3-D or 4-D input (N, C, ...) but got shape {}",
            fmt_shape(s)
        ));
    }
    Ok((s[0], s[1], s[2..].iter().product()))
}

fn check_vec(name: &str, v: Option<&Tensor>, c: usize, xs: &[usize]) -> Result<()> {
    if let Some(v) = v {
        if v.shape() != [c] {
            return Err(shape_err!(
                "batch_norm: {name} has shape {} but the input has {c} channels; input {}",
                fmt_shape(v.shape()),
                fmt_shape(xs)
            ));
        }
    }
    Ok(())
}

/// Runs `f` on every `(n, c)` plane (index, data) in parallel when large,
/// collecting the results in plane order (so reductions over them are in a
/// fixed order whatever the thread count).
fn per_plane<T: Send>(len: usize, hw: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    let planes = len.checked_div(hw).unwrap_or(0);
    if len >= 1 << 15 {
        let mut out: Vec<Option<T>> = (0..planes).map(|_| None).collect();
        let group = ((1 << 14) / hw.max(1)).max(1);
        crate::parallel::chunks_mut(&mut out, 1, group, |i, o| o[0] = Some(f(i)));
        out.into_iter().flatten().collect()
    } else {
        (0..planes).map(f).collect()
    }
}

/// Per-channel mean and biased variance: each plane's mean and sum of
/// squared deviations (two passes, f64), merged per channel in plane order
/// with Chan et al.'s pairwise formula.
fn channel_stats(x: &[f32], n: usize, c: usize, hw: usize) -> Vec<(f64, f64)> {
    let planes = per_plane(x.len(), hw, |p| {
        let v = &x[p * hw..(p + 1) * hw];
        let mean = v.iter().map(|&a| a as f64).sum::<f64>() / hw as f64;
        let m2 = v
            .iter()
            .map(|&a| (a as f64 - mean) * (a as f64 - mean))
            .sum::<f64>();
        (mean, m2)
    });
    (0..c)
        .map(|ch| {
            let (mut cnt, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
            for i in 0..n {
                let (pm, pm2) = planes[i * c + ch];
                let nb = hw as f64;
                let tot = cnt + nb;
                let delta = pm - mean;
                mean += delta * nb / tot;
                m2 += pm2 + delta * delta * cnt * nb / tot;
                cnt = tot;
            }
            (mean, if cnt > 0.0 { m2 / cnt } else { 0.0 })
        })
        .collect()
}

/// Applies `y = x * scale[c] + shift[c]` plane by plane.
fn apply(x: &[f32], n: usize, c: usize, hw: usize, scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; n * c * hw];
    if hw == 0 {
        return y;
    }
    let plane = |(idx, out): (usize, &mut [f32])| {
        let ch = idx % c;
        let (a, b) = (scale[ch], shift[ch]);
        for (o, &v) in out.iter_mut().zip(&x[idx * hw..(idx + 1) * hw]) {
            *o = v * a + b;
        }
    };
    if n * c * hw >= 1 << 15 {
        let group = ((1 << 14) / hw.max(1)).max(1);
        crate::parallel::chunks_mut(&mut y, hw, group, |i, o| plane((i, o)));
    } else {
        y.chunks_mut(hw).enumerate().for_each(plane);
    }
    y
}

/// What the forward pass hands to backward.
#[derive(Debug)]
pub struct BatchNormSaved {
    /// Per-channel mean and inverse std used to normalise.
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
    pub training: bool,
}

/// Forward batch norm; updates `running_mean`/`running_var` in training mode.
///
/// # Errors
/// `ShapeMismatch` for a bad rank or parameter length; `InvalidArgument` for
/// training with one value per channel, a missing running statistic in eval
/// mode, or a negative `eps`.
pub fn forward(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    running: Option<(&mut Tensor, &mut Tensor)>,
    p: &BatchNormParams,
) -> Result<(Tensor, BatchNormSaved)> {
    let (n, c, hw) = dims(x)?;
    check_vec("weight", gamma, c, x.shape())?;
    check_vec("bias", beta, c, x.shape())?;
    if p.eps.is_nan() || p.eps < 0.0 || !p.momentum.is_finite() {
        return Err(arg_err!(
            "batch_norm: invalid eps {} or momentum {}",
            p.eps,
            p.momentum
        ));
    }
    let m = n * hw;
    let (mean, inv_std): (Vec<f32>, Vec<f32>) = if p.training {
        if m <= 1 {
            return Err(arg_err!(
                "batch_norm: expected more than 1 value per channel when training, got input {}",
                fmt_shape(x.shape())
            ));
        }
        let stats = channel_stats(x.data(), n, c, hw);
        if let Some((rm, rv)) = running {
            check_vec("running_mean", Some(rm), c, x.shape())?;
            check_vec("running_var", Some(rv), c, x.shape())?;
            let mom = p.momentum as f64;
            let unbias = m as f64 / (m as f64 - 1.0);
            for (ch, &(mu, var)) in stats.iter().enumerate() {
                let r = &mut rm.data_mut()[ch];
                *r = ((1.0 - mom) * *r as f64 + mom * mu) as f32;
                let r = &mut rv.data_mut()[ch];
                *r = ((1.0 - mom) * *r as f64 + mom * var * unbias) as f32;
            }
        }
        stats
            .iter()
            .map(|&(mu, var)| (mu as f32, (1.0 / (var + p.eps as f64).sqrt()) as f32))
            .unzip()
    } else {
        let Some((rm, rv)) = running else {
            return Err(arg_err!(
                "batch_norm: eval mode needs running_mean and running_var"
            ));
        };
        check_vec("running_mean", Some(rm), c, x.shape())?;
        check_vec("running_var", Some(rv), c, x.shape())?;
        let inv = rv
            .data()
            .iter()
            .map(|&v| (1.0 / (v as f64 + p.eps as f64).sqrt()) as f32)
            .collect();
        (rm.data().to_vec(), inv)
    };
    let scale: Vec<f32> = (0..c)
        .map(|ch| gamma.map_or(1.0, |g| g.data()[ch]) * inv_std[ch])
        .collect();
    let shift: Vec<f32> = (0..c)
        .map(|ch| beta.map_or(0.0, |b| b.data()[ch]) - mean[ch] * scale[ch])
        .collect();
    let y = apply(x.data(), n, c, hw, &scale, &shift);
    let saved = BatchNormSaved {
        mean,
        inv_std,
        training: p.training,
    };
    Ok((Tensor::from_parts(x.shape().to_vec(), y), saved))
}

/// Gradients `(dx, dgamma, dbeta)` of batch norm.
///
/// # Errors
/// `OutOfMemory` only.
pub fn backward(
    x: &Tensor,
    gamma: Option<&Tensor>,
    g: &Tensor,
    saved: &BatchNormSaved,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (n, c, hw) = dims(x)?;
    let m = (n * hw) as f64;
    let (xd, gd) = (x.data(), g.data());
    // Per channel: sum(g) and sum(g * xhat), from per-plane partial sums
    // added in plane order.
    let partial = per_plane(xd.len(), hw, |p| {
        let ch = p % c;
        let (mu, is) = (saved.mean[ch] as f64, saved.inv_std[ch] as f64);
        let r = p * hw..(p + 1) * hw;
        let (mut sg, mut sgx) = (0.0f64, 0.0f64);
        for (&xv, &gv) in xd[r.clone()].iter().zip(&gd[r]) {
            sg += gv as f64;
            sgx += gv as f64 * (xv as f64 - mu) * is;
        }
        (sg, sgx)
    });
    let mut sums = vec![(0.0f64, 0.0f64); c];
    for (p, &(sg, sgx)) in partial.iter().enumerate() {
        sums[p % c].0 += sg;
        sums[p % c].1 += sgx;
    }
    let gamma_of = |ch: usize| gamma.map_or(1.0, |t| t.data()[ch]);
    // dx = k1 * g + k2 * x + k3 per channel (the formula, expanded).
    let mut k1 = vec![0.0f32; c];
    let mut k2 = vec![0.0f32; c];
    let mut k3 = vec![0.0f32; c];
    for ch in 0..c {
        let (mu, is, ga) = (
            saved.mean[ch] as f64,
            saved.inv_std[ch] as f64,
            gamma_of(ch) as f64,
        );
        if saved.training {
            let (sg, sgx) = sums[ch];
            // dx = ga*is/m * (m*g - sg - (x - mu)*is*sgx)
            k1[ch] = (ga * is) as f32;
            k2[ch] = (-ga * is * is * sgx / m) as f32;
            k3[ch] = (ga * is / m * (-sg + mu * is * sgx)) as f32;
        } else {
            k1[ch] = (ga * is) as f32;
        }
    }
    let mut dx = vec![0.0f32; xd.len()];
    if hw > 0 {
        let plane = |(idx, out): (usize, &mut [f32])| {
            let ch = idx % c;
            let r = idx * hw..(idx + 1) * hw;
            for ((o, &gv), &xv) in out.iter_mut().zip(&gd[r.clone()]).zip(&xd[r]) {
                *o = k1[ch] * gv + k2[ch] * xv + k3[ch];
            }
        };
        if xd.len() >= 1 << 15 {
            let group = ((1 << 14) / hw.max(1)).max(1);
            crate::parallel::chunks_mut(&mut dx, hw, group, |i, o| plane((i, o)));
        } else {
            dx.chunks_mut(hw).enumerate().for_each(plane);
        }
    }
    let dgamma = sums.iter().map(|&(_, sgx)| sgx as f32).collect();
    let dbeta = sums.iter().map(|&(sg, _)| sg as f32).collect();
    Ok((
        Tensor::from_parts(x.shape().to_vec(), dx),
        Tensor::from_parts(vec![c], dgamma),
        Tensor::from_parts(vec![c], dbeta),
    ))
}

struct BatchNormBackward {
    x: Arc<Tensor>,
    gamma: Option<Arc<Tensor>>,
    saved: BatchNormSaved,
    has_gamma: bool,
    has_beta: bool,
}

impl Backward for BatchNormBackward {
    fn name(&self) -> &'static str {
        "BatchNormBackward"
    }
    fn backward(&self, g: &Tensor, _inputs: &[Var], needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (dx, dgamma, dbeta) = backward(&self.x, self.gamma.as_deref(), g, &self.saved)?;
        let mut out = vec![needs[0].then_some(dx)];
        if self.has_gamma {
            out.push(Some(dgamma));
        }
        if self.has_beta {
            out.push(Some(dbeta));
        }
        Ok(out)
    }
}

/// Autograd batch norm. `running_mean`/`running_var` are buffers, updated in
/// place in training mode (they never receive gradients).
///
/// # Errors
/// See [`forward`].
pub fn batch_norm(
    x: &Var,
    running_mean: Option<&Var>,
    running_var: Option<&Var>,
    gamma: Option<&Var>,
    beta: Option<&Var>,
    p: &BatchNormParams,
) -> Result<Var> {
    let xv = x.value();
    let gv = gamma.map(|g| g.value());
    let bv = beta.map(|b| b.value());
    let (y, saved) = match (running_mean, running_var) {
        (Some(rm), Some(rv)) => {
            let mut rmt = (*rm.value()).clone();
            let mut rvt = (*rv.value()).clone();
            let out = forward(
                &xv,
                gv.as_deref(),
                bv.as_deref(),
                Some((&mut rmt, &mut rvt)),
                p,
            )?;
            if p.training {
                rm.set_value(rmt)?;
                rv.set_value(rvt)?;
            }
            out
        }
        (None, None) => forward(&xv, gv.as_deref(), bv.as_deref(), None, p)?,
        _ => {
            return Err(arg_err!(
                "batch_norm: give both running_mean and running_var, or neither"
            ))
        }
    };
    let mut inputs = vec![x.clone()];
    inputs.extend(gamma.cloned());
    inputs.extend(beta.cloned());
    let back = BatchNormBackward {
        x: xv,
        gamma: gv,
        saved,
        has_gamma: gamma.is_some(),
        has_beta: beta.is_some(),
    };
    Ok(Var::from_op(y, back, inputs))
}
