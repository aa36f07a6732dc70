//! The one error type of the core. `cnnrs-py` maps it to Python exceptions:
//! `ShapeMismatch` and `InvalidArgument` become `ValueError`, `Unsupported`
//! becomes `ValueError` too (the input is valid Python but not supported),
//! `OutOfMemory` becomes `MemoryError`.

/// Everything that can go wrong in a core call. Messages are API: they name
/// the op, what was expected, what came, and every shape involved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CnnError {
    #[error("{0}")]
    ShapeMismatch(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    OutOfMemory(String),
}

pub type Result<T> = std::result::Result<T, CnnError>;

/// Formats a shape the way Python prints a tuple: `(8, 3, 32, 32)`, `(5,)`.
pub fn fmt_shape(shape: &[usize]) -> String {
    match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `ShapeMismatch` with a formatted message.
#[macro_export]
macro_rules! shape_err {
    ($($arg:tt)*) => { $crate::error::CnnError::ShapeMismatch(format!($($arg)*)) };
}

/// `InvalidArgument` with a formatted message.
#[macro_export]
macro_rules! arg_err {
    ($($arg:tt)*) => { $crate::error::CnnError::InvalidArgument(format!($($arg)*)) };
}
