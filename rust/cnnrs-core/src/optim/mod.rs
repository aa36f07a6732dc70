//! Parameter updates, done in Rust in one call for all parameters of a group.

pub mod adam;
pub mod sgd;

pub use adam::{Adam, AdamConfig};
pub use sgd::{Sgd, SgdConfig};

/// Elements per task of a parallel update (64 KiB of each array).
pub(crate) const BLOCK: usize = 1 << 14;
/// Parameters from this many elements update on the pool.
pub(crate) const PAR_MIN: usize = 1 << 16;

/// Shared scaffolding of the optimizers' large-parameter tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::autograd::Var;
    use crate::tensor::Tensor;

    /// Runs one optimizer for `grads.len()` steps over the values `p0`,
    /// held once as one large parameter (parallel blocks) and once as
    /// small parameters below `PAR_MIN` (each updated serially); returns
    /// both final values, flattened. `make` builds the optimizer over the
    /// parameters it is given and returns one step of it.
    pub(crate) fn big_and_small(
        p0: &[f32],
        grads: &[Vec<f32>],
        make: impl Fn(Vec<Var>) -> Box<dyn FnMut()>,
    ) -> [Vec<f32>; 2] {
        crate::parallel::set_num_threads(crate::parallel::get_num_threads().max(2));
        let leaf = |v: &[f32]| Var::leaf(Tensor::new(vec![v.len()], v.to_vec()).unwrap(), true);
        let big = vec![leaf(p0)];
        let small: Vec<Var> = p0.chunks(super::PAR_MIN / 3).map(leaf).collect();
        [big, small].map(|params| {
            let mut step = make(params.clone());
            for g in grads {
                let mut off = 0;
                for p in &params {
                    let len = p.value().numel();
                    let gt = Tensor::new(vec![len], g[off..off + len].to_vec()).unwrap();
                    p.set_grad(Some(gt)).unwrap();
                    off += len;
                }
                step();
            }
            params
                .iter()
                .flat_map(|p| p.value().data().to_vec())
                .collect()
        })
    }

    /// Every 97th element and the last 9 of `got` against `want(i)`.
    pub(crate) fn check_sampled(got: &[f32], want: impl Fn(usize) -> f64, what: &str) {
        let n = got.len();
        for i in (0..n).step_by(97).chain(n.saturating_sub(9)..n) {
            let (g, w) = (got[i] as f64, want(i));
            assert!(
                (g - w).abs() < 1e-5 * (1.0 + w.abs()),
                "{what} [{i}]: {g} vs {w}"
            );
        }
    }
}
