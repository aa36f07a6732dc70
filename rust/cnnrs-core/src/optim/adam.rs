//! Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019), PyTorch's
//! update rule, step count per parameter:
//!
//! ```text
//! Adam:  g = grad + weight_decay * p          AdamW: p = p * (1 - lr * weight_decay); g = grad
//! m = beta1 * m + (1 - beta1) * g
//! v = beta2 * v + (1 - beta2) * g^2            (amsgrad: vmax = max(vmax, v), used below)
//! p = p - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)
//! ```

use super::{BLOCK, PAR_MIN};
use crate::arg_err;
use crate::autograd::Var;
use crate::error::Result;
use crate::kernels::simd::wide;

#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Decoupled weight decay (AdamW) instead of L2 in the gradient (Adam).
    pub decoupled: bool,
    pub amsgrad: bool,
}

impl AdamConfig {
    /// # Errors
    /// `InvalidArgument` for a negative lr/eps/weight decay or betas outside [0, 1).
    pub fn validate(&self) -> Result<()> {
        let name = if self.decoupled { "AdamW" } else { "Adam" };
        for (what, v) in [
            ("lr", self.lr),
            ("eps", self.eps),
            ("weight_decay", self.weight_decay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(arg_err!("{name}: invalid {what}: {v}"));
            }
        }
        for (i, b) in [self.beta1, self.beta2].into_iter().enumerate() {
            if !(0.0..1.0).contains(&b) {
                return Err(arg_err!("{name}: invalid beta parameter at index {i}: {b}"));
            }
        }
        Ok(())
    }
}

struct State {
    step: u64,
    m: Vec<f32>,
    v: Vec<f32>,
    vmax: Vec<f32>,
}

/// One parameter group's Adam/AdamW state.
pub struct Adam {
    params: Vec<Var>,
    state: Vec<Option<State>>,
}

impl Adam {
    pub fn new(params: Vec<Var>) -> Self {
        let state = params.iter().map(|_| None).collect();
        Self { params, state }
    }

    /// Steps taken by parameter `i` (0 before its first gradient).
    pub fn step_count(&self, i: usize) -> u64 {
        self.state
            .get(i)
            .and_then(|s| s.as_ref())
            .map_or(0, |s| s.step)
    }

    /// One update of every parameter that has a gradient.
    ///
    /// # Errors
    /// See [`AdamConfig::validate`].
    pub fn step(&mut self, cfg: &AdamConfig) -> Result<()> {
        cfg.validate()?;
        for (p, st) in self.params.iter().zip(self.state.iter_mut()) {
            p.with_grad(|g| {
                let Some(g) = g else { return Ok(()) };
                p.update_value(|t| {
                    let n = t.numel();
                    let s = st.get_or_insert_with(|| State {
                        step: 0,
                        m: vec![0.0; n],
                        v: vec![0.0; n],
                        vmax: if cfg.amsgrad {
                            vec![0.0; n]
                        } else {
                            Vec::new()
                        },
                    });
                    if cfg.amsgrad && s.vmax.len() != n {
                        s.vmax = vec![0.0; n];
                    }
                    s.step += 1;
                    update(t.data_mut(), g.data(), s, cfg);
                    Ok(())
                })
            })?;
        }
        Ok(())
    }
}

fn update(p: &mut [f32], g: &[f32], s: &mut State, cfg: &AdamConfig) {
    let t = s.step as i32;
    let bc1 = 1.0 - (cfg.beta1 as f64).powi(t);
    let bc2 = 1.0 - (cfg.beta2 as f64).powi(t);
    let k = Consts {
        step_size: (cfg.lr as f64 / bc1) as f32,
        inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
        b1: cfg.beta1,
        b2: cfg.beta2,
        eps: cfg.eps,
        wd: cfg.weight_decay,
        lr: cfg.lr,
    };
    // Each block's loop compiled for the active SIMD family, the variants
    // fixed at compile time, so it vectorises (sqrt and division included).
    let run = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], vmax: &mut [f32]| {
        wide(
            #[inline(always)]
            || match (cfg.decoupled, cfg.amsgrad) {
                (false, false) => adam_step::<false, false>(p, g, m, v, vmax, &k),
                (false, true) => adam_step::<false, true>(p, g, m, v, vmax, &k),
                (true, false) => adam_step::<true, false>(p, g, m, v, vmax, &k),
                (true, true) => adam_step::<true, true>(p, g, m, v, vmax, &k),
            },
        )
    };
    let State { m, v, vmax, .. } = s;
    if p.len() < PAR_MIN {
        run(p, g, m, v, vmax);
    } else {
        // Without AMSGrad `vmax` is empty: every block gets an empty slice.
        let mut vmax_blocks = vmax.chunks_mut(BLOCK);
        let mut blocks: Vec<_> = p
            .chunks_mut(BLOCK)
            .zip(g.chunks(BLOCK))
            .zip(m.chunks_mut(BLOCK))
            .zip(v.chunks_mut(BLOCK))
            .map(|(((p, g), m), v)| (p, g, m, v, vmax_blocks.next().unwrap_or_default()))
            .collect();
        crate::parallel::chunks_mut(&mut blocks, 1, 1, |_, blk| {
            let (p, g, m, v, vmax) = &mut blk[0];
            run(p, g, m, v, vmax)
        });
    }
}

/// The per-step constants of [`update`].
struct Consts {
    step_size: f32,
    inv_sqrt_bc2: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    wd: f32,
    lr: f32,
}

/// One block of the Adam update; `vmax` is read only with `AMSGRAD` (then
/// as long as `p`).
#[inline(always)]
fn adam_step<const DECOUPLED: bool, const AMSGRAD: bool>(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    vmax: &mut [f32],
    k: &Consts,
) {
    let n = p.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    let vmax = if AMSGRAD { &mut vmax[..n] } else { &mut [][..] };
    for i in 0..n {
        let mut gi = g[i];
        if DECOUPLED {
            p[i] *= 1.0 - k.lr * k.wd;
        } else {
            gi += k.wd * p[i];
        }
        m[i] = k.b1 * m[i] + (1.0 - k.b1) * gi;
        v[i] = k.b2 * v[i] + (1.0 - k.b2) * gi * gi;
        let vv = if AMSGRAD {
            vmax[i] = vmax[i].max(v[i]);
            vmax[i]
        } else {
            v[i]
        };
        p[i] -= k.step_size * m[i] / (vv.sqrt() * k.inv_sqrt_bc2 + k.eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    fn reference(p0: f64, grads: &[f64], c: &AdamConfig) -> f64 {
        let (lr, b1, b2, eps, wd) = (
            c.lr as f64,
            c.beta1 as f64,
            c.beta2 as f64,
            c.eps as f64,
            c.weight_decay as f64,
        );
        let (mut p, mut m, mut v, mut vmax) = (p0, 0.0, 0.0, 0.0f64);
        for (t, &g0) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            let mut g = g0;
            if c.decoupled {
                p *= 1.0 - lr * wd;
            } else {
                g += wd * p;
            }
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            vmax = vmax.max(v);
            let vv = if c.amsgrad { vmax } else { v };
            let mhat = m / (1.0 - b1.powi(t));
            let vhat = vv / (1.0 - b2.powi(t));
            p -= lr * mhat / (vhat.sqrt() + eps);
        }
        p
    }

    /// The tests' settings: lr 0.01, PyTorch's betas and eps.
    fn config(decoupled: bool, amsgrad: bool, weight_decay: f32) -> AdamConfig {
        AdamConfig {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled,
            amsgrad,
        }
    }

    /// A parameter large enough for the parallel, block-vectorised update
    /// (an odd length: partial last block and vector tails): every element
    /// follows the f64 rule on every variant, with the same bits as the
    /// serial update of the same values.
    #[test]
    fn large_parameters_match_reference_per_element() {
        for (decoupled, amsgrad, wd) in [
            (false, false, 0.1),
            (true, true, 0.05),
            (false, true, 0.0),
            (true, false, 0.01),
        ] {
            let cfg = config(decoupled, amsgrad, wd);
            crate::optim::testing::check_large_parameter(
                6,
                |params| {
                    let mut opt = Adam::new(params);
                    Box::new(move || opt.step(&cfg).unwrap())
                },
                |p0, gs| reference(p0, gs, &cfg),
                &format!("{cfg:?}"),
            );
        }
    }

    #[test]
    fn adam_and_adamw_match_reference() {
        let grads = [0.3, -1.0, 2.5, 0.1, -0.4, 0.9];
        for (decoupled, amsgrad, wd) in [
            (false, false, 0.0),
            (false, false, 0.1),
            (true, false, 0.1),
            (false, true, 0.01),
            (true, true, 0.05),
        ] {
            let cfg = config(decoupled, amsgrad, wd);
            let p = Var::leaf(Tensor::new(vec![1], vec![0.7]).unwrap(), true);
            let mut opt = Adam::new(vec![p.clone()]);
            for &g in &grads {
                p.set_grad(Some(Tensor::new(vec![1], vec![g as f32]).unwrap()))
                    .unwrap();
                opt.step(&cfg).unwrap();
            }
            let want = reference(0.7, &grads, &cfg);
            let got = p.value().data()[0] as f64;
            assert!((got - want).abs() < 1e-5, "{cfg:?}: {got} vs {want}");
            assert_eq!(opt.step_count(0), grads.len() as u64);
        }
    }

    #[test]
    fn bad_config_is_refused() {
        let cfg = AdamConfig {
            lr: 0.01,
            beta1: 1.0,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            amsgrad: false,
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("Adam: invalid beta parameter at index 0"), "{e}");
    }
}
