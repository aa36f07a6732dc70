//! `relu`: `max(x, 0)`. Backward passes the gradient where the output is
//! positive (at exactly 0 the gradient is 0, as in PyTorch).

use std::sync::Arc;

use crate::autograd::{Backward, Var};
use crate::error::Result;
use crate::tensor::Tensor;

pub mod reference;
#[cfg(test)]
mod tests;

/// `max(x, 0)` elementwise. NaN stays NaN, as in PyTorch.
pub fn relu_forward(x: &Tensor) -> Tensor {
    let data =
        crate::ops::elementwise::map(x.data(), |v| if v > 0.0 || v.is_nan() { v } else { 0.0 });
    Tensor::from_parts(x.shape().to_vec(), data)
}

/// `g` where `y > 0`, else 0.
pub fn relu_backward(g: &Tensor, y: &Tensor) -> Tensor {
    let data =
        crate::ops::elementwise::zip_map(g.data(), y.data(), |g, y| if y > 0.0 { g } else { 0.0 });
    Tensor::from_parts(g.shape().to_vec(), data)
}

struct ReluBackward {
    y: Arc<Tensor>,
}

impl Backward for ReluBackward {
    fn name(&self) -> &'static str {
        "ReluBackward"
    }
    fn backward(
        &self,
        g: &Tensor,
        _inputs: &[Var],
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(relu_backward(g, &self.y))])
    }
}

/// Autograd relu. The backward saves the output (not the input).
pub fn relu(x: &Var) -> Var {
    let y = relu_forward(&x.value());
    if !Var::any_requires_grad(&[x]) {
        return Var::leaf(y, false);
    }
    let y = Arc::new(y);
    Var::from_op_arc(y.clone(), ReluBackward { y }, vec![x.clone()])
}
