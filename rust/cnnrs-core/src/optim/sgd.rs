//! Stochastic gradient descent with momentum, dampening, weight decay and
//! Nesterov momentum, with PyTorch's update rule:
//!
//! ```text
//! d = grad + weight_decay * p
//! buf = d                                   (first step)
//! buf = momentum * buf + (1 - dampening) * d (later steps)
//! d = d + momentum * buf   (nesterov)  |  d = buf   (otherwise; when momentum > 0)
//! p = p - lr * d
//! ```

use super::{BLOCK, PAR_MIN};
use crate::arg_err;
use crate::autograd::Var;
use crate::error::Result;
use crate::kernels::simd::wide;

/// Hyper-parameters, passed at every step so schedules can change them.
#[derive(Clone, Copy, Debug)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

impl SgdConfig {
    /// # Errors
    /// `InvalidArgument` for a negative or non-finite lr, momentum or weight
    /// decay, or Nesterov without momentum / with dampening.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(arg_err!(
                    "SGD: invalid {name}: {v} (must be a finite number >= 0)"
                ));
            }
        }
        if !self.dampening.is_finite() {
            return Err(arg_err!("SGD: invalid dampening: {}", self.dampening));
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(arg_err!(
                "SGD: Nesterov momentum requires a momentum > 0 and zero dampening"
            ));
        }
        Ok(())
    }
}

/// One parameter group's SGD state.
pub struct Sgd {
    params: Vec<Var>,
    bufs: Vec<Option<Vec<f32>>>,
}

impl Sgd {
    pub fn new(params: Vec<Var>) -> Self {
        let bufs = vec![None; params.len()];
        Self { params, bufs }
    }

    pub fn params(&self) -> &[Var] {
        &self.params
    }

    /// Applies one update to every parameter that has a gradient.
    ///
    /// # Errors
    /// See [`SgdConfig::validate`].
    pub fn step(&mut self, cfg: &SgdConfig) -> Result<()> {
        cfg.validate()?;
        for (p, buf) in self.params.iter().zip(self.bufs.iter_mut()) {
            p.with_grad(|g| {
                let Some(g) = g else { return Ok(()) };
                p.update_value(|t| {
                    update(t.data_mut(), g.data(), buf, cfg);
                    Ok(())
                })
            })?;
        }
        Ok(())
    }
}

fn update(p: &mut [f32], g: &[f32], buf: &mut Option<Vec<f32>>, cfg: &SgdConfig) {
    let par = p.len() >= PAR_MIN;
    if cfg.momentum == 0.0 {
        let (lr, wd) = (cfg.lr, cfg.weight_decay);
        // Each block's loop compiled for the active SIMD family, so it
        // vectorises.
        let run = |p: &mut [f32], g: &[f32]| {
            wide(
                #[inline(always)]
                || {
                    for (p, &g) in p.iter_mut().zip(g) {
                        *p -= lr * (g + wd * *p);
                    }
                },
            )
        };
        if par {
            let mut blocks: Vec<_> = p.chunks_mut(BLOCK).zip(g.chunks(BLOCK)).collect();
            crate::parallel::chunks_mut(&mut blocks, 1, 1, |_, b| run(b[0].0, b[0].1));
        } else {
            run(p, g);
        }
        return;
    }
    let first = buf.is_none();
    let b = buf.get_or_insert_with(|| vec![0.0; p.len()]);
    let run = |p: &mut [f32], g: &[f32], b: &mut [f32]| {
        wide(
            #[inline(always)]
            || match (first, cfg.nesterov) {
                (true, false) => momentum_step::<true, false>(p, g, b, cfg),
                (true, true) => momentum_step::<true, true>(p, g, b, cfg),
                (false, false) => momentum_step::<false, false>(p, g, b, cfg),
                (false, true) => momentum_step::<false, true>(p, g, b, cfg),
            },
        )
    };
    if par {
        let mut blocks: Vec<_> = p
            .chunks_mut(BLOCK)
            .zip(g.chunks(BLOCK))
            .zip(b.chunks_mut(BLOCK))
            .collect();
        crate::parallel::chunks_mut(&mut blocks, 1, 1, |_, blk| {
            let ((p, g), b) = &mut blk[0];
            run(p, g, b)
        });
    } else {
        run(p, g, b);
    }
}

/// The momentum update of one block, the first step's and Nesterov's
/// variants fixed at compile time so the loop has no branch and vectorises.
#[inline(always)]
fn momentum_step<const FIRST: bool, const NESTEROV: bool>(
    p: &mut [f32],
    g: &[f32],
    b: &mut [f32],
    cfg: &SgdConfig,
) {
    let SgdConfig {
        lr,
        momentum,
        dampening,
        weight_decay: wd,
        ..
    } = *cfg;
    for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
        let d = g + wd * *p;
        *b = if FIRST {
            d
        } else {
            momentum * *b + (1.0 - dampening) * d
        };
        let step = if NESTEROV { d + momentum * *b } else { *b };
        *p -= lr * step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    /// The rule written out step by step in f64 (the oracle).
    fn reference(p0: f64, grads: &[f64], cfg: &SgdConfig) -> f64 {
        let (lr, m, damp, wd) = (
            cfg.lr as f64,
            cfg.momentum as f64,
            cfg.dampening as f64,
            cfg.weight_decay as f64,
        );
        let mut p = p0;
        let mut buf: Option<f64> = None;
        for &g in grads {
            let mut d = g + wd * p;
            if m != 0.0 {
                let b = match buf {
                    None => d,
                    Some(b) => m * b + (1.0 - damp) * d,
                };
                buf = Some(b);
                d = if cfg.nesterov { d + m * b } else { b };
            }
            p -= lr * d;
        }
        p
    }

    /// The tests' settings at lr 0.1.
    fn config(momentum: f32, dampening: f32, weight_decay: f32, nesterov: bool) -> SgdConfig {
        SgdConfig {
            lr: 0.1,
            momentum,
            dampening,
            weight_decay,
            nesterov,
        }
    }

    #[test]
    fn matches_reference_for_all_variants() {
        let grads = [0.5f64, -1.25, 2.0, 0.75];
        for &(momentum, dampening, wd, nesterov) in &[
            (0.0, 0.0, 0.0, false),
            (0.9, 0.0, 0.0, false),
            (0.9, 0.1, 1e-2, false),
            (0.9, 0.0, 5e-4, true),
            (0.0, 0.0, 0.1, false),
        ] {
            let cfg = config(momentum, dampening, wd, nesterov);
            let p = Var::leaf(Tensor::new(vec![1], vec![1.5]).unwrap(), true);
            let mut opt = Sgd::new(vec![p.clone()]);
            for &g in &grads {
                p.set_grad(Some(Tensor::new(vec![1], vec![g as f32]).unwrap()))
                    .unwrap();
                opt.step(&cfg).unwrap();
            }
            let want = reference(1.5, &grads, &cfg);
            let got = p.value().data()[0] as f64;
            assert!((got - want).abs() < 1e-5, "{cfg:?}: {got} vs {want}");
        }
    }

    /// A parameter large enough for the parallel, block-vectorised update
    /// (an odd length, so the last block and the vector tails are partial):
    /// every element follows the f64 rule, with the same bits as the serial
    /// update of the same values.
    #[test]
    fn large_parameters_match_reference_per_element() {
        for &(momentum, dampening, wd, nesterov) in &[
            (0.0, 0.0, 1e-2, false),
            (0.9, 0.1, 1e-2, false),
            (0.9, 0.0, 5e-4, true),
        ] {
            let cfg = config(momentum, dampening, wd, nesterov);
            crate::optim::testing::check_large_parameter(
                5,
                |params| {
                    let mut opt = Sgd::new(params);
                    Box::new(move || opt.step(&cfg).unwrap())
                },
                |p0, gs| reference(p0, gs, &cfg),
                &format!("{cfg:?}"),
            );
        }
    }

    #[test]
    fn parameters_without_grad_are_untouched_and_bad_config_refused() {
        let p = Var::leaf(Tensor::new(vec![2], vec![1.0, 2.0]).unwrap(), true);
        let mut opt = Sgd::new(vec![p.clone()]);
        let cfg = SgdConfig {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        };
        opt.step(&cfg).unwrap();
        assert_eq!(p.value().data(), &[1.0, 2.0]);
        let bad = SgdConfig { lr: -1.0, ..cfg };
        assert!(opt
            .step(&bad)
            .unwrap_err()
            .to_string()
            .contains("SGD: invalid lr"));
        let bad = SgdConfig {
            nesterov: true,
            ..cfg
        };
        assert!(opt.step(&bad).is_err());
    }
}
