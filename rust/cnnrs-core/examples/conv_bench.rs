//! Convolution and pooling timings from Rust alone (no Python), split into
//! forward, input gradient and weight gradient, for tuning the kernels on a
//! shared machine:
//!
//! ```text
//! cargo run --release -p cnnrs-core --example conv_bench -- [threads] [repeats] [case...]
//! ```
//!
//! Cases are the kernel rows of `benches/bench.py` plus two ResNet-style
//! small maps (`conv3x3_14`, `conv3x3_7`) and `maxpool3x3s2`; each conv is
//! timed as forward, input gradient (`dx`), weight gradient (`dw`) and
//! forward + all gradients (`PART=fwd|dx|dw|fwd_bwd` keeps one). Each line
//! prints the best and median wall time and the median on-CPU time of the
//! calling thread (for one thread: what descheduling by other processes
//! does not inflate), with the GFLOP/s they imply. To match the Python
//! package's allocator policy, run with
//! `MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=536870912 MALLOC_TOP_PAD_=67108864`.

use std::io::Write;
use std::time::Instant;

use cnnrs_core::ops::conv2d::{self, Conv2dNeeds, Conv2dParams};
use cnnrs_core::ops::pool2d::{self, MaxPool2dParams};
use cnnrs_core::Tensor;

struct Case {
    name: &'static str,
    n: usize,
    c_in: usize,
    c_out: usize,
    hw: usize,
    k: (usize, usize),
    stride: usize,
    pad: (usize, usize),
}

const CASES: [Case; 9] = [
    Case {
        name: "conv3x3",
        n: 8,
        c_in: 64,
        c_out: 64,
        hw: 56,
        k: (3, 3),
        stride: 1,
        pad: (1, 1),
    },
    Case {
        name: "conv3x3_b1",
        n: 1,
        c_in: 64,
        c_out: 64,
        hw: 56,
        k: (3, 3),
        stride: 1,
        pad: (1, 1),
    },
    Case {
        name: "conv1x1",
        n: 8,
        c_in: 256,
        c_out: 64,
        hw: 56,
        k: (1, 1),
        stride: 1,
        pad: (0, 0),
    },
    Case {
        name: "conv7x7s2",
        n: 8,
        c_in: 3,
        c_out: 64,
        hw: 224,
        k: (7, 7),
        stride: 2,
        pad: (3, 3),
    },
    Case {
        name: "conv1x3",
        n: 8,
        c_in: 64,
        c_out: 64,
        hw: 56,
        k: (1, 3),
        stride: 1,
        pad: (0, 1),
    },
    Case {
        name: "conv3x1",
        n: 8,
        c_in: 64,
        c_out: 64,
        hw: 56,
        k: (3, 1),
        stride: 1,
        pad: (1, 0),
    },
    Case {
        name: "conv3x3_14",
        n: 8,
        c_in: 256,
        c_out: 256,
        hw: 14,
        k: (3, 3),
        stride: 1,
        pad: (1, 1),
    },
    Case {
        name: "conv3x3_7",
        n: 8,
        c_in: 512,
        c_out: 512,
        hw: 7,
        k: (3, 3),
        stride: 1,
        pad: (1, 1),
    },
    Case {
        name: "conv5x5_lenet",
        n: 64,
        c_in: 1,
        c_out: 6,
        hw: 32,
        k: (5, 5),
        stride: 1,
        pad: (0, 0),
    },
];

/// A timed piece: label, work (flops or bytes), the call.
type Part<'a> = (&'static str, f64, Box<dyn FnMut() + 'a>);

fn filled(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            // A hash, so max pooling sees unpredictable winners as on real data.
            let h = ((i as u64) ^ ((seed as u64) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            ((h >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5
        })
        .collect();
    Tensor::new(shape.to_vec(), data).expect("shape")
}

/// (best wall, median wall, median on-CPU of the calling thread) in seconds.
fn time(repeats: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    f();
    f();
    let mut wall = Vec::with_capacity(repeats);
    let mut cpu = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let c0 = thread_cpu_ns();
        let t = Instant::now();
        f();
        wall.push(t.elapsed().as_secs_f64());
        cpu.push((thread_cpu_ns() - c0) as f64 * 1e-9);
    }
    wall.sort_by(|a, b| a.total_cmp(b));
    cpu.sort_by(|a, b| a.total_cmp(b));
    (wall[0], wall[repeats / 2], cpu[repeats / 2])
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads = args.first().and_then(|s| s.parse().ok()).unwrap_or(1);
    let repeats = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10usize)
        .max(1);
    let only: Vec<&str> = args.iter().skip(2).map(|s| s.as_str()).collect();
    cnnrs_core::parallel::set_num_threads(threads);
    let mut out = std::io::stdout().lock();
    for c in CASES
        .iter()
        .filter(|c| only.is_empty() || only.contains(&c.name))
    {
        let x = filled(&[c.n, c.c_in, c.hw, c.hw], 1);
        let w = filled(&[c.c_out, c.c_in, c.k.0, c.k.1], 2);
        let b = filled(&[c.c_out], 3);
        let p = Conv2dParams::new((c.stride, c.stride), c.pad, (1, 1), 1);
        let y = conv2d::forward(&x, &w, Some(&b), &p, false).expect("conv");
        let dy = filled(y.shape(), 4);
        let flops =
            2.0 * (c.n * c.c_out * y.shape()[2] * y.shape()[3] * c.c_in * c.k.0 * c.k.1) as f64;
        let only_dx = Conv2dNeeds {
            input: true,
            weight: false,
            bias: false,
        };
        let only_dw = Conv2dNeeds {
            input: false,
            weight: true,
            bias: false,
        };
        let parts: [Part; 4] = [
            (
                "fwd",
                flops,
                Box::new(|| drop(conv2d::forward(&x, &w, Some(&b), &p, false))),
            ),
            (
                "dx",
                flops,
                Box::new(|| drop(conv2d::backward(&x, &w, &dy, &p, only_dx))),
            ),
            (
                "dw",
                flops,
                Box::new(|| drop(conv2d::backward(&x, &w, &dy, &p, only_dw))),
            ),
            (
                "fwd_bwd",
                3.0 * flops,
                Box::new(|| {
                    drop(conv2d::forward(&x, &w, Some(&b), &p, false));
                    drop(conv2d::backward(&x, &w, &dy, &p, Conv2dNeeds::ALL));
                }),
            ),
        ];
        let part = std::env::var("PART").ok();
        for (what, fl, mut f) in parts {
            if part.as_deref().is_some_and(|p| p != what) {
                continue;
            }
            let (best, med, cpu) = time(repeats, &mut f);
            let _ = writeln!(
                out,
                "{:<14} {:<8} t{threads} best {:8.3} ms ({:6.1} GF/s) median {:8.3} ms ({:6.1}) cpu {:8.3} ms ({:6.1})",
                c.name, what, best * 1e3, fl / best / 1e9, med * 1e3, fl / med / 1e9, cpu * 1e3, fl / cpu / 1e9
            );
        }
    }
    if only.is_empty() || only.contains(&"maxpool2x2") || only.contains(&"maxpool3x3s2") {
        for (name, k, s) in [("maxpool2x2", 2, 2), ("maxpool3x3s2", 3, 2)] {
            if !(only.is_empty() || only.contains(&name)) {
                continue;
            }
            let x = filled(&[8, 64, 112, 112], 5);
            let p = MaxPool2dParams {
                stride: [s, s],
                ..MaxPool2dParams::new([k, k])
            };
            let (y, idx) = pool2d::forward_with_indices(&x, &p).expect("pool");
            let dy = filled(y.shape(), 6);
            let bytes_f = (x.numel() + y.numel()) as f64 * 4.0;
            let parts: [Part; 3] = [
                ("fwd", bytes_f, Box::new(|| drop(pool2d::forward(&x, &p)))),
                (
                    "fwd_idx",
                    bytes_f,
                    Box::new(|| drop(pool2d::forward_with_indices(&x, &p))),
                ),
                (
                    "bwd",
                    bytes_f,
                    Box::new(|| drop(pool2d::backward(&dy, &idx, x.shape()))),
                ),
            ];
            for (what, bytes, mut f) in parts {
                let (best, med, cpu) = time(repeats, &mut f);
                let _ = writeln!(
                    out,
                    "{name:<14} {what:<8} t{threads} best {:8.3} ms ({:6.1} GB/s) median {:8.3} ms cpu {:8.3} ms",
                    best * 1e3, bytes / best / 1e9, med * 1e3, cpu * 1e3
                );
            }
        }
    }
}

/// Nanoseconds this thread has run on a CPU (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` to the pointer we pass,
    // which points at a live local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
