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

    /// Three steps of an optimizer over one parameter of `3 * BLOCK +
    /// PAR_MIN + 7` random values (parallel, block-vectorised; an odd
    /// length, so the last block and the vector tails are partial): the
    /// same bits as over the same values split into small parameters
    /// (each updated serially), and every sampled element as
    /// `reference(p0, grads)` in f64 gives. `make` builds the optimizer
    /// over the parameters it is given and returns one step of it.
    pub(crate) fn check_large_parameter(
        seed: u64,
        make: impl Fn(Vec<Var>) -> Box<dyn FnMut()>,
        reference: impl Fn(f64, &[f64]) -> f64,
        what: &str,
    ) {
        let n = 3 * super::BLOCK + super::PAR_MIN + 7;
        let mut rng = crate::testutil::Rng::new(seed);
        let p0 = rng.normal_vec(n);
        let grads: Vec<Vec<f32>> = (0..3).map(|_| rng.normal_vec(n)).collect();
        let [big, small] = big_and_small(&p0, &grads, make);
        assert_eq!(big, small, "{what}: parallel blocks vs serial");
        for i in (0..n).step_by(97).chain(n - 9..n) {
            let gs: Vec<f64> = grads.iter().map(|g| g[i] as f64).collect();
            let (g, w) = (big[i] as f64, reference(p0[i] as f64, &gs));
            assert!(
                (g - w).abs() < 1e-5 * (1.0 + w.abs()),
                "{what} [{i}]: {g} vs {w}"
            );
        }
    }

    /// Runs one optimizer for `grads.len()` steps over the values `p0`,
    /// held once as one large parameter (parallel blocks) and once as
    /// small parameters below `PAR_MIN` (each updated serially); returns
    /// both final values, flattened. `make` builds the optimizer over the
    /// parameters it is given and returns one step of it.
    fn big_and_small(
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
}
