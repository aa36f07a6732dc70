use super::pairs::*;
use crate::testutil::Rng;

type Grid = Vec<Vec<f64>>;

/// `np.rot90(a)`: `b[i][j] = a[j][w - 1 - i]`, shape `(w, h)`.
fn rot90(a: &Grid) -> Grid {
    let (h, w) = (a.len(), a[0].len());
    (0..w)
        .map(|i| (0..h).map(|j| a[j][w - 1 - i]).collect())
        .collect()
}

/// The naive transform of one plane: window, flips, quarter turns.
fn reference(plane: &[f64], w: usize, p: &PairParams) -> Grid {
    let mut a: Grid = (0..p.wh)
        .map(|y| {
            (0..p.ww)
                .map(|x| plane[(p.oy + y) * w + p.ox + x])
                .collect()
        })
        .collect();
    if p.flip_lr {
        a.iter_mut().for_each(|r| r.reverse());
    }
    if p.flip_ud {
        a.reverse();
    }
    for _ in 0..p.k {
        a = rot90(&a);
    }
    a
}

#[test]
fn pairs_match_the_naive_transform_and_share_parameters() {
    let mut rng = Rng::new(3);
    for case in 0..60 {
        let (m, c) = (rng.below(3) + 1, rng.below(3) + 1);
        let (h, w) = (rng.below(8) + 4, rng.below(8) + 4);
        let rot = case % 3 != 0;
        let lim = if rot { h.min(w) } else { h };
        let size = (rng.below(lim) + 1, rng.below(if rot { lim } else { w }) + 1);
        let a = PairAugment {
            size,
            flip: case % 2 == 0,
            rot90: rot,
        };
        let images: Vec<f32> = (0..m * c * h * w).map(|v| v as f32).collect();
        let masks: Vec<i64> = (0..m * h * w).map(|v| 7 * v as i64).collect();
        let sources: Vec<usize> = (0..5).map(|_| rng.below(m)).collect();
        let seed = Some(case as u64);
        let params = draw_pair_params([m, c, h, w], &sources, &a, seed).unwrap();
        let (xi, xm) =
            random_crop_pairs(&images, [m, c, h, w], &masks, &sources, &a, seed).unwrap();
        let (oh, ow) = size;
        for (i, p) in params.iter().enumerate() {
            assert_eq!(p.src, sources[i]);
            if !a.rot90 {
                assert_eq!(p.k, 0);
            }
            if !a.flip {
                assert!(!p.flip_lr && !p.flip_ud);
            }
            let mplane: Vec<f64> = masks[p.src * h * w..(p.src + 1) * h * w]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let want = reference(&mplane, w, p);
            assert_eq!((want.len(), want[0].len()), (oh, ow));
            for y in 0..oh {
                for x in 0..ow {
                    assert_eq!(xm[(i * oh + y) * ow + x] as f64, want[y][x], "mask");
                }
            }
            for ch in 0..c {
                let off = (p.src * c + ch) * h * w;
                let plane: Vec<f64> = images[off..off + h * w].iter().map(|&v| v as f64).collect();
                let want = reference(&plane, w, p);
                for y in 0..oh {
                    for x in 0..ow {
                        assert_eq!(xi[((i * c + ch) * oh + y) * ow + x] as f64, want[y][x]);
                    }
                }
            }
        }
    }
}

#[test]
fn pairs_reach_all_eight_symmetries_and_repeat_by_seed() {
    let a = PairAugment {
        size: (3, 3),
        flip: true,
        rot90: true,
    };
    let sources = vec![0; 400];
    let p = draw_pair_params([1, 1, 3, 3], &sources, &a, Some(9)).unwrap();
    let mut seen = std::collections::HashSet::new();
    for q in &p {
        // The image of the corner (0, 0) and of (0, 1) identify the symmetry.
        seen.insert((q.source(0, 0), q.source(0, 1)));
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(
        p,
        draw_pair_params([1, 1, 3, 3], &sources, &a, Some(9)).unwrap()
    );
    assert_ne!(
        p,
        draw_pair_params([1, 1, 3, 3], &sources, &a, Some(10)).unwrap()
    );
}

#[test]
fn pairs_errors() {
    let a = PairAugment {
        size: (4, 2),
        flip: false,
        rot90: true,
    };
    let img = vec![0.0f32; 2 * 3 * 5];
    let mask = vec![0i64; 2 * 3 * 5];
    let e = random_crop_pairs(&img, [2, 1, 3, 5], &mask, &[0], &a, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("random_crop_pairs: crop size (4, 2) (rotated by 90 degrees) does not fit")
            && e.contains("(2, 1, 3, 5)"),
        "{e}"
    );
    let a = PairAugment {
        rot90: false,
        size: (2, 2),
        flip: false,
    };
    let e = random_crop_pairs(&img, [2, 1, 3, 5], &mask, &[2], &a, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("source index 2 is out of range for 2 images"),
        "{e}"
    );
    let e = random_crop_pairs(&img, [2, 1, 3, 5], &mask[1..], &[0], &a, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("random_crop_pairs: images hold 30 values and masks 29"),
        "{e}"
    );
    let a = PairAugment { size: (0, 2), ..a };
    assert!(random_crop_pairs(&img, [2, 1, 3, 5], &mask, &[0], &a, None).is_err());
}
