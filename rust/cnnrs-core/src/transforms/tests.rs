use super::*;
use crate::rng::manual_seed;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|v| v as f32).collect()
}

#[test]
fn crop_with_padding_is_a_shifted_window() {
    let _s = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    manual_seed(0);
    let shape = [5, 2, 6, 7];
    let x = ramp(5 * 2 * 6 * 7);
    let y = random_crop(&x, shape, (6, 7), 2, -1.0).unwrap();
    for i in 0..5 {
        // Find the offset from the first non-fill value of channel 0 and check
        // every pixel against it.
        let img = &y[i * 84..(i + 1) * 84];
        let ok = (0..5).any(|oy| {
            (0..5).any(|ox| {
                (0..2).all(|c| {
                    (0..6).all(|yy| {
                        (0..7).all(|xx| {
                            let (sy, sx) = (yy as isize + oy - 2, xx as isize + ox - 2);
                            let want = if sy >= 0 && sx >= 0 && sy < 6 && sx < 7 {
                                x[((i * 2 + c) * 6 + sy as usize) * 7 + sx as usize]
                            } else {
                                -1.0
                            };
                            img[(c * 6 + yy) * 7 + xx] == want
                        })
                    })
                })
            })
        });
        assert!(ok, "image {i} is not a padded window of the input");
    }
    assert!(random_crop(&x, shape, (11, 7), 2, 0.0)
        .unwrap_err()
        .to_string()
        .contains("random_crop: crop size"));
}

#[test]
fn flip_translate_noise_affine_cutout_normalize() {
    let _s = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    manual_seed(1);
    let shape = [64, 1, 3, 4];
    let x = ramp(64 * 12);
    let mut f = x.clone();
    hflip(&mut f, shape, 0.5).unwrap();
    let flipped = f
        .chunks(12)
        .zip(x.chunks(12))
        .filter(|(a, b)| a != b)
        .count();
    assert!((20..=44).contains(&flipped), "{flipped}");
    for (a, b) in f.chunks(12).zip(x.chunks(12)) {
        let mut rev: Vec<f32> = b.chunks(4).flat_map(|r| r.iter().rev().copied()).collect();
        if a != b {
            assert_eq!(a, rev.as_mut_slice());
        }
    }
    let mut t = x.clone();
    translate(&mut t, shape, 1, 1, 0.0).unwrap();
    assert!(t.iter().all(|v| *v == 0.0 || x.contains(v)));
    let mut z = vec![0.0; 100_000];
    gaussian_noise(&mut z, 2.0).unwrap();
    let mean = z.iter().sum::<f32>() / 1e5;
    let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 1e5;
    assert!(
        mean.abs() < 0.05 && (var.sqrt() - 2.0).abs() < 0.05,
        "{mean} {var}"
    );
    // Identity affine leaves images unchanged.
    let mut a = x.clone();
    affine(&mut a, shape, 0.0, (1.0, 1.0), 0.0).unwrap();
    for (p, q) in a.iter().zip(&x) {
        assert!((p - q).abs() < 1e-3);
    }
    // Zoom x2 about the centre: the centre stays, a corner samples halfway.
    let mut zm = ramp(9);
    affine(&mut zm, [1, 1, 3, 3], 0.0, (2.0, 2.0), 0.0).unwrap();
    assert!(
        (zm[4] - 4.0).abs() < 1e-5 && (zm[0] - 2.0).abs() < 1e-5,
        "{zm:?}"
    );
    let mut c = vec![1.0; 2 * 3 * 8 * 8];
    cutout(&mut c, [2, 3, 8, 8], 3).unwrap();
    for im in c.chunks(192) {
        let zeros = im[..64].iter().filter(|v| **v == 0.0).count();
        assert!((1..=9).contains(&zeros));
        assert_eq!(&im[..64], &im[64..128]);
    }
    let mut nrm = vec![2.0; 2 * 3 * 2];
    normalize(&mut nrm, [2, 3, 1, 2], &[1.0, 2.0, 3.0], &[0.5, 1.0, 2.0]).unwrap();
    assert_eq!(&nrm[..6], &[2.0, 2.0, 0.0, 0.0, -0.5, -0.5]);
    assert!(normalize(&mut nrm, [2, 3, 1, 2], &[1.0, 2.0], &[1.0]).is_err());
    assert!(normalize(&mut nrm, [2, 3, 1, 2], &[1.0], &[0.0]).is_err());
}
