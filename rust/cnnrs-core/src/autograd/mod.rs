//! Define-by-run reverse-mode autograd, entirely in Rust.
//!
//! A [`Var`] is a value (an `Arc<Tensor>`, so ops snapshot their inputs for
//! free and an optimizer update copies on write if a graph still holds the old
//! value) plus, when it was produced by an op while gradients were enabled, the
//! node that produced it: the op's [`Backward`] and its input `Var`s.
//! [`Var::backward`] walks that graph once in reverse topological order and
//! accumulates gradients into the leaves' `.grad`.
//!
//! Grad mode is per thread, as in PyTorch: [`set_grad_enabled`] and
//! [`NoGradGuard`] affect only the calling thread.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{fmt_shape, CnnError, Result};
use crate::tensor::Tensor;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

static PROFILE_ON: AtomicBool = AtomicBool::new(false);
static PROFILE: Mutex<Vec<(&'static str, u64, f64)>> = Mutex::new(Vec::new());

/// Turns per-op backward timing on or off (off by default; one clock read
/// per node when on). Turning it on clears earlier figures.
pub fn set_backward_profiling(on: bool) {
    if on {
        PROFILE.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
    PROFILE_ON.store(on, Ordering::Relaxed);
}

/// `(op name, calls, seconds)` of the backward passes run while profiling,
/// slowest first.
pub fn backward_profile() -> Vec<(&'static str, u64, f64)> {
    let mut v = PROFILE.lock().unwrap_or_else(|p| p.into_inner()).clone();
    v.sort_by(|a, b| b.2.total_cmp(&a.2));
    v
}

fn record_profile(name: &'static str, secs: f64) {
    let mut p = PROFILE.lock().unwrap_or_else(|p| p.into_inner());
    match p.iter_mut().find(|e| e.0 == name) {
        Some(e) => {
            e.1 += 1;
            e.2 += secs;
        }
        None => p.push((name, 1, secs)),
    }
}

/// Whether ops called from this thread record a graph.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Turns graph recording on or off for this thread; returns the old setting.
pub fn set_grad_enabled(enabled: bool) -> bool {
    GRAD_ENABLED.with(|g| g.replace(enabled))
}

/// Disables recording until dropped (then restores the previous mode).
pub struct NoGradGuard {
    prev: bool,
}

impl NoGradGuard {
    #[allow(clippy::new_without_default)]
    #[must_use]
    pub fn new() -> Self {
        Self {
            prev: set_grad_enabled(false),
        }
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        set_grad_enabled(self.prev);
    }
}

/// The backward half of an op. It keeps whatever it saved in forward.
pub trait Backward: Send + Sync {
    /// The op's name, for error messages and `grad_fn` reprs.
    fn name(&self) -> &'static str;

    /// Gradients with respect to each input, given the gradient of the
    /// output. `needs[i]` says whether input `i` wants one; return `None`
    /// where it does not (or where the op has no gradient for it).
    ///
    /// # Errors
    /// Any error of the op's backward kernel.
    fn backward(
        &self,
        grad_out: &Tensor,
        inputs: &[Var],
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>>;
}

struct Node {
    op: Box<dyn Backward>,
    inputs: Vec<Var>,
}

struct VarInner {
    value: RwLock<Arc<Tensor>>,
    grad: Mutex<Option<Tensor>>,
    requires_grad: AtomicBool,
    node: Option<Node>,
}

// Dropping a long chain of nodes recursively would overflow the stack (a
// 100k-op graph is plausible in a loop); unlink it iteratively instead.
impl Drop for VarInner {
    fn drop(&mut self) {
        let Some(node) = self.node.take() else {
            return;
        };
        let mut stack = node.inputs;
        while let Some(v) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(v.0) {
                if let Some(n) = inner.node.take() {
                    stack.extend(n.inputs);
                }
            }
        }
    }
}

/// A tensor value in the autograd graph. Cloning is cheap (shared handle).
#[derive(Clone)]
pub struct Var(Arc<VarInner>);

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Var")
            .field("shape", &self.shape())
            .field("requires_grad", &self.requires_grad())
            .field("grad_fn", &self.grad_fn_name())
            .finish()
    }
}

fn lock_err() -> CnnError {
    CnnError::InvalidArgument("autograd: a lock was poisoned by an earlier failure".into())
}

impl Var {
    /// A leaf (no history).
    pub fn leaf(value: Tensor, requires_grad: bool) -> Self {
        Self(Arc::new(VarInner {
            value: RwLock::new(Arc::new(value)),
            grad: Mutex::new(None),
            requires_grad: AtomicBool::new(requires_grad),
            node: None,
        }))
    }

    /// The result of an op. Records `op` only if grad mode is on and some
    /// input requires a gradient; otherwise returns a plain leaf.
    pub fn from_op(value: Tensor, op: impl Backward + 'static, inputs: Vec<Var>) -> Self {
        Self::from_op_arc(Arc::new(value), op, inputs)
    }

    /// [`Var::from_op`] for a value the op also keeps for its backward (an
    /// output it saves, e.g. ReLU's): both share one buffer, no copy.
    pub fn from_op_arc(value: Arc<Tensor>, op: impl Backward + 'static, inputs: Vec<Var>) -> Self {
        let record = is_grad_enabled() && inputs.iter().any(|v| v.requires_grad());
        if !record {
            return Self(Arc::new(VarInner {
                value: RwLock::new(value),
                grad: Mutex::new(None),
                requires_grad: AtomicBool::new(false),
                node: None,
            }));
        }
        Self(Arc::new(VarInner {
            value: RwLock::new(value),
            grad: Mutex::new(None),
            requires_grad: AtomicBool::new(true),
            node: Some(Node {
                op: Box::new(op),
                inputs,
            }),
        }))
    }

    /// Whether an op should record a graph for these inputs (lets ops skip
    /// saving tensors for backward when nothing will use them).
    pub fn any_requires_grad(inputs: &[&Var]) -> bool {
        is_grad_enabled() && inputs.iter().any(|v| v.requires_grad())
    }

    /// A snapshot of the current value.
    pub fn value(&self) -> Arc<Tensor> {
        match self.0.value.read() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn shape(&self) -> Vec<usize> {
        self.value().shape().to_vec()
    }

    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Sets `requires_grad` on a leaf.
    ///
    /// # Errors
    /// `InvalidArgument` on a non-leaf (as in PyTorch, only leaves can be
    /// switched).
    pub fn set_requires_grad(&self, flag: bool) -> Result<()> {
        if self.0.node.is_some() {
            return Err(CnnError::InvalidArgument(
                "requires_grad_: can only change requires_grad of leaf tensors; use detach() first"
                    .into(),
            ));
        }
        self.0.requires_grad.store(flag, Ordering::Relaxed);
        Ok(())
    }

    pub fn is_leaf(&self) -> bool {
        self.0.node.is_none()
    }

    /// Name of the op that produced this value, if recorded.
    pub fn grad_fn_name(&self) -> Option<&'static str> {
        self.0.node.as_ref().map(|n| n.op.name())
    }

    /// Same value, no history, `requires_grad = false`.
    pub fn detach(&self) -> Self {
        let v = self.value();
        Self(Arc::new(VarInner {
            value: RwLock::new(v),
            grad: Mutex::new(None),
            requires_grad: AtomicBool::new(false),
            node: None,
        }))
    }

    /// Replaces the value in place (optimizer updates, `load_state_dict`).
    ///
    /// # Errors
    /// `ShapeMismatch` when the new value has another shape.
    pub fn set_value(&self, t: Tensor) -> Result<()> {
        let mut guard = self.0.value.write().map_err(|_| lock_err())?;
        if guard.shape() != t.shape() {
            return Err(CnnError::ShapeMismatch(format!(
                "set_value: new value has shape {} but the tensor has shape {}",
                fmt_shape(t.shape()),
                fmt_shape(guard.shape())
            )));
        }
        *guard = Arc::new(t);
        Ok(())
    }

    /// Runs `f` on the value mutably; copies first if a graph still holds
    /// the current value (copy on write).
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn update_value<R>(&self, f: impl FnOnce(&mut Tensor) -> Result<R>) -> Result<R> {
        let mut guard = self.0.value.write().map_err(|_| lock_err())?;
        f(Arc::make_mut(&mut guard))
    }

    /// The accumulated gradient, if any.
    pub fn grad(&self) -> Option<Tensor> {
        match self.0.grad.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Runs `f` with the gradient (None if there is none).
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn with_grad<R>(&self, f: impl FnOnce(Option<&Tensor>) -> Result<R>) -> Result<R> {
        let g = self.0.grad.lock().map_err(|_| lock_err())?;
        f(g.as_ref())
    }

    /// Sets or clears the gradient.
    ///
    /// # Errors
    /// `ShapeMismatch` when the gradient's shape differs from the value's.
    pub fn set_grad(&self, g: Option<Tensor>) -> Result<()> {
        if let Some(t) = &g {
            let shape = self.shape();
            if t.shape() != shape.as_slice() {
                return Err(CnnError::ShapeMismatch(format!(
                    "grad: gradient has shape {} but the tensor has shape {}",
                    fmt_shape(t.shape()),
                    fmt_shape(&shape)
                )));
            }
        }
        *self.0.grad.lock().map_err(|_| lock_err())? = g;
        Ok(())
    }

    /// True when both handles are the same value object.
    pub fn ptr_eq(&self, other: &Var) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn key(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// Back-propagates from this value. `grad` defaults to 1 for a
    /// one-element value; any other value needs an explicit gradient, as in
    /// PyTorch. Gradients accumulate (add) into the leaves' `.grad`.
    ///
    /// # Errors
    /// `InvalidArgument` when the value does not require grad or needs an
    /// explicit gradient; `ShapeMismatch` for a gradient of the wrong shape;
    /// any error of an op's backward.
    pub fn backward(&self, grad: Option<Tensor>) -> Result<()> {
        self.backward_shared(grad.map(Arc::new))
    }

    /// [`Var::backward`] with a shared gradient (e.g. another Var's value),
    /// which is only copied if a leaf receives it or it must be added to.
    ///
    /// # Errors
    /// As [`Var::backward`].
    pub fn backward_shared(&self, grad: Option<Arc<Tensor>>) -> Result<()> {
        if !self.requires_grad() {
            return Err(CnnError::InvalidArgument(
                "backward: tensor does not require grad and has no grad_fn".into(),
            ));
        }
        let shape = self.shape();
        let seed = match grad {
            Some(g) => {
                if g.shape() != shape.as_slice() {
                    return Err(CnnError::ShapeMismatch(format!(
                        "backward: gradient has shape {} but the tensor has shape {}",
                        fmt_shape(g.shape()),
                        fmt_shape(&shape)
                    )));
                }
                g
            }
            None => {
                if shape.iter().product::<usize>() != 1 {
                    return Err(CnnError::InvalidArgument(format!(
                        "backward: grad can be implicitly created only for scalar outputs; \
                         got shape {}",
                        fmt_shape(&shape)
                    )));
                }
                Arc::new(Tensor::full(&shape, 1.0)?)
            }
        };
        // Without grad mode, backward ops that call forward kernels do not
        // record (no higher-order graphs).
        let _guard = NoGradGuard::new();
        let order = self.topo_order();
        let mut grads: HashMap<usize, Arc<Tensor>> = HashMap::new();
        grads.insert(self.key(), seed);
        for var in order.iter().rev() {
            let Some(g) = grads.remove(&var.key()) else {
                continue;
            };
            let Some(node) = &var.0.node else {
                accumulate_leaf(var, Arc::unwrap_or_clone(g))?;
                continue;
            };
            let needs: Vec<bool> = node.inputs.iter().map(|v| v.requires_grad()).collect();
            let started = PROFILE_ON
                .load(Ordering::Relaxed)
                .then(std::time::Instant::now);
            let in_grads = node.op.backward(&g, &node.inputs, &needs)?;
            if let Some(t) = started {
                record_profile(node.op.name(), t.elapsed().as_secs_f64());
            }
            drop(g);
            for ((input, ig), need) in node.inputs.iter().zip(in_grads).zip(needs) {
                let (Some(ig), true) = (ig, need) else {
                    continue;
                };
                debug_assert_eq!(ig.shape(), input.shape().as_slice(), "{}", node.op.name());
                match grads.get_mut(&input.key()) {
                    Some(acc) => add_into(Arc::make_mut(acc), &ig),
                    None => {
                        grads.insert(input.key(), Arc::new(ig));
                    }
                }
            }
        }
        Ok(())
    }

    /// Vars reachable from `self` through recorded nodes, inputs before
    /// outputs (iterative DFS: deep networks do not overflow the stack).
    fn topo_order(&self) -> Vec<Var> {
        let mut order = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack: Vec<(Var, bool)> = vec![(self.clone(), false)];
        while let Some((v, expanded)) = stack.pop() {
            if expanded {
                order.push(v);
                continue;
            }
            if !seen.insert(v.key()) {
                continue;
            }
            stack.push((v.clone(), true));
            if let Some(node) = &v.0.node {
                for input in &node.inputs {
                    if input.requires_grad() && !seen.contains(&input.key()) {
                        stack.push((input.clone(), false));
                    }
                }
            }
        }
        order
    }
}

fn add_into(acc: &mut Tensor, g: &Tensor) {
    let gd = g.data();
    crate::parallel::for_each_chunk_mut(acc.data_mut(), |off, chunk| {
        for (a, b) in chunk.iter_mut().zip(&gd[off..]) {
            *a += b;
        }
    });
}

fn accumulate_leaf(var: &Var, g: Tensor) -> Result<()> {
    let mut slot = var.0.grad.lock().map_err(|_| lock_err())?;
    match slot.as_mut() {
        Some(acc) => add_into(acc, &g),
        None => *slot = Some(g),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
