//! Statistical tolerances for "traffic follows the weights" checks. Flows land on elements by a
//! hash of their 5-tuple, so with `n` flows and an element owning share `p` of the Maglev table,
//! its count is binomial(n, p). A check allows `Z` standard deviations (a false alarm about once
//! in 10^6 checks) plus the Maglev table's own imprecision (a share differs from the weight's by
//! at most about one percent at the default table size).

/// Standard deviations allowed.
pub const Z: f64 = 5.0;
/// Relative imprecision of Maglev shares, allowed on top.
pub const TABLE_SLACK: f64 = 0.01;

/// The range of counts an element with weight `w` out of `total` may see among `n` flows.
pub fn expected_range(n: u64, w: u32, total: u32) -> (u64, u64) {
    let p = f64::from(w) / f64::from(total.max(1));
    let n_f = n as f64;
    let mean = n_f * p;
    let slack = Z * (n_f * p * (1.0 - p)).sqrt() + TABLE_SLACK * n_f;
    let lo = (mean - slack).floor().max(0.0) as u64;
    let hi = (mean + slack).ceil().min(n_f) as u64;
    (lo, hi)
}

/// Checks that `counts[i]` (flows seen by element `i`) fit `weights[i]`; returns a description
/// of the first misfit.
pub fn check_proportions(counts: &[u64], weights: &[u32]) -> Result<(), String> {
    let n: u64 = counts.iter().sum();
    let total: u32 = weights.iter().sum();
    for (i, (&c, &w)) in counts.iter().zip(weights).enumerate() {
        let (lo, hi) = expected_range(n, w, total);
        if c < lo || c > hi {
            return Err(format!(
                "element {i} (weight {w} of {total}) got {c} of {n} flows, expected {lo}..={hi}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_contain_the_mean_and_reject_a_wrong_split() {
        let (lo, hi) = expected_range(600, 1, 6);
        assert!(lo < 100 && 100 < hi);
        // An even split where weights say 1/2/3 is far outside the tolerance at n = 600.
        assert!(check_proportions(&[200, 200, 200], &[1, 2, 3]).is_err());
        assert!(check_proportions(&[100, 200, 300], &[1, 2, 3]).is_ok());
        // A weight of zero share must see nothing beyond the table slack.
        assert!(check_proportions(&[0, 300, 300], &[0, 1, 1]).is_ok());
        assert!(check_proportions(&[60, 270, 270], &[0, 1, 1]).is_err());
    }
}
