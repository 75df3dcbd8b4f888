//! Natural ordering of names (`chifflot-2` before `chifflot-10`).
//!
//! Owns one comparison function used to sort sites, clusters and nodes of a
//! reference tree. It knows nothing about nodes or files.

use std::cmp::Ordering;

/// Compares two names so that runs of ASCII digits compare by numeric value:
/// `chifflot-2 < chifflot-10`, `abacus2 < abacus17`. Everything else compares
/// byte by byte. Names that differ only by leading zeros (`n-01`, `n-1`) are
/// ordered by plain string order, so the result is a total order consistent
/// with equality.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let (run_x, rest_x) = split_digits(x);
                let (run_y, rest_y) = split_digits(y);
                let (num_x, num_y) = (strip_zeros(run_x), strip_zeros(run_y));
                let by_value = num_x.len().cmp(&num_y.len()).then_with(|| num_x.cmp(num_y));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                x = rest_x;
                y = rest_y;
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

/// Splits `s` after its leading run of ASCII digits.
fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s.iter().position(|c| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

fn strip_zeros(digits: &[u8]) -> &[u8] {
    let start = digits.iter().position(|&c| c != b'0').unwrap_or(digits.len());
    &digits[start..]
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;
    use std::cmp::Ordering;

    #[test]
    fn digits_compare_by_value() {
        let mut names = vec!["chifflot-10", "chifflot-2", "chifflot-1", "abacus17", "abacus2", "chiclet-8", "n-01", "n-1", "n-0"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["abacus2", "abacus17", "chiclet-8", "chifflot-1", "chifflot-2", "chifflot-10", "n-0", "n-01", "n-1",]);
    }

    #[test]
    fn consistent_with_equality() {
        assert_eq!(natural_cmp("a1b", "a1b"), Ordering::Equal);
        assert_eq!(natural_cmp("", ""), Ordering::Equal);
        assert_eq!(natural_cmp("", "a"), Ordering::Less);
        assert_eq!(natural_cmp("a", "a1"), Ordering::Less);
        assert_eq!(natural_cmp("a99999999999999999999999", "a100000000000000000000000"), Ordering::Less);
    }
}
