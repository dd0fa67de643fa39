//! The canary-versus-baseline judge: a Mann-Whitney U test (Kayenta's NetflixACAJudge does the
//! same) with an effect-size filter, reported with every number and in plain language.
//!
//! **Procedure.**
//! 1. NaN and infinite values are removed from both series and counted (Kayenta's
//!    `nanStrategy: remove`; replacing them with 0 let broken canaries pass, spinnaker#5622).
//! 2. Fewer than `min_samples` values left in either series: [`Verdict::NoData`]; the caller
//!    applies the metric's no-data rule.
//! 3. The U statistic of the canary is computed with average ranks for ties; the p-value comes
//!    from the normal approximation with the tie-corrected variance and a continuity correction
//!    of 0.5, exactly as `scipy.stats.mannwhitneyu(canary, baseline, method="asymptotic")`. For
//!    very small samples (under about 8 per series) an exact test would be more precise; the
//!    approximation is slightly conservative there, which errs towards passing a canary only
//!    when the difference is small — acceptable for a gate with `min_samples >= 3`.
//! 4. The test is one-sided in the direction that counts as bad (`increase`: canary greater,
//!    `decrease`: canary smaller), two-sided for `either`. Significant means `p < 1 - confidence`.
//! 5. A significant result fails only when the means moved the same way by more than
//!    `allowed_change`, relative to the baseline mean's magnitude. When the baseline mean is 0
//!    (a zero-inflated metric, e.g. errors that never happen on the baseline) there is no ratio
//!    (`relative_change` is `None`); any significant move away from 0 then counts as beyond the
//!    allowed change, and the explanation says so (Kayenta#674 made such canaries pass or
//!    fail unpredictably).
//! 6. When every value of both series is equal the variance is 0 and p is 1: nothing differs.

use super::*;

/// What the judge concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No significant change in a direction that counts, or one within `allowed_change`.
    Pass,
    /// The canary is significantly higher (only reported when the direction counts it).
    High,
    /// The canary is significantly lower (only reported when the direction counts it).
    Low,
    /// Too few values to judge.
    NoData,
}

/// A comparison with every number behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JudgeResult {
    pub verdict: Verdict,
    pub direction: Direction,
    /// The canary's U statistic (pairs where the canary value is larger, ties counting half);
    /// absent with no data.
    #[serde(default)]
    pub u: Option<f64>,
    /// Of the test named by `direction`; absent with no data.
    #[serde(default)]
    pub p_value: Option<f64>,
    #[serde(default)]
    pub baseline_mean: Option<f64>,
    #[serde(default)]
    pub canary_mean: Option<f64>,
    /// `(canary_mean - baseline_mean) / |baseline_mean|`; absent when the baseline mean is 0.
    #[serde(default)]
    pub relative_change: Option<f64>,
    /// Values used, after removing NaN and infinite ones.
    pub baseline_samples: usize,
    pub canary_samples: usize,
    /// NaN or infinite values removed.
    #[serde(default)]
    pub baseline_removed: usize,
    #[serde(default)]
    pub canary_removed: usize,
    pub confidence: f64,
    pub allowed_change: f64,
    /// The whole comparison in a sentence, e.g. "canary mean 0.023 is 2.3x the baseline mean
    /// 0.01 (+130%; one-sided Mann-Whitney U test for an increase, p = 0.001 < 0.05, 10 canary
    /// and 10 baseline values): higher, which this metric counts as a failure".
    pub explanation: String,
}

impl JudgeResult {
    /// Whether the verdict fails the measurement (`High` or `Low`; a one-sided test only
    /// reports the direction that counts).
    pub fn is_failure(&self) -> bool {
        matches!(self.verdict, Verdict::High | Verdict::Low)
    }
}

/// The Mann-Whitney U test of `x` against `y` (normal approximation, tie-corrected, with
/// continuity correction), as `scipy.stats.mannwhitneyu(x, y, method="asymptotic")`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of `x`: pairs `(x_i, y_j)` with `x_i > y_j`, plus half the ties.
    pub u: f64,
    /// `x` tends to be greater than `y`.
    pub p_greater: f64,
    /// `x` tends to be smaller than `y`.
    pub p_less: f64,
    pub p_two_sided: f64,
}

/// Runs the test; both slices must be non-empty and hold finite values (the judge ensures it).
pub fn mann_whitney(x: &[f64], y: &[f64]) -> MannWhitney {
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    let mut all: Vec<(f64, bool)> = x.iter().map(|&v| (v, true)).chain(y.iter().map(|&v| (v, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i + 1;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their average.
        let average_rank = (i + 1 + j) as f64 / 2.0;
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        rank_sum_x += average_rank * all[i..j].iter().filter(|(_, in_x)| *in_x).count() as f64;
        i = j;
    }
    let u = rank_sum_x - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let mean = n1 * n2 / 2.0;
    let variance = if n > 1.0 { n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0))) } else { 0.0 };
    if variance <= 0.0 || x.is_empty() || y.is_empty() {
        return MannWhitney { u, p_greater: 1.0, p_less: 1.0, p_two_sided: 1.0 };
    }
    let sigma = variance.sqrt();
    let upper_tail = |statistic: f64| normal_sf((statistic - mean - 0.5) / sigma);
    let u_other = n1 * n2 - u;
    MannWhitney {
        u,
        p_greater: upper_tail(u).clamp(0.0, 1.0),
        p_less: upper_tail(u_other).clamp(0.0, 1.0),
        p_two_sided: (2.0 * upper_tail(u.max(u_other))).clamp(0.0, 1.0),
    }
}

/// Compares the canary with the baseline; see the module documentation for the procedure.
pub fn compare(baseline: &[f64], canary: &[f64], spec: &JudgeSpec) -> JudgeResult {
    let clean = |values: &[f64]| -> (Vec<f64>, usize) {
        let kept: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let removed = values.len() - kept.len();
        (kept, removed)
    };
    let (base, baseline_removed) = clean(baseline);
    let (canary_values, canary_removed) = clean(canary);
    let mean = |values: &[f64]| (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
    let (baseline_mean, canary_mean) = (mean(&base), mean(&canary_values));
    let relative_change = match (baseline_mean, canary_mean) {
        (Some(b), Some(c)) if b != 0.0 => Some((c - b) / b.abs()),
        _ => None,
    };
    let mut result = JudgeResult {
        verdict: Verdict::NoData,
        direction: spec.direction,
        u: None,
        p_value: None,
        baseline_mean,
        canary_mean,
        relative_change,
        baseline_samples: base.len(),
        canary_samples: canary_values.len(),
        baseline_removed,
        canary_removed,
        confidence: spec.confidence,
        allowed_change: spec.allowed_change,
        explanation: String::new(),
    };
    let removed_note = removed_note(baseline_removed, canary_removed);
    let min_samples = spec.min_samples.max(1);
    if base.len() < min_samples || canary_values.len() < min_samples {
        result.explanation = format!(
            "not enough data to compare: {} and {}{removed_note}; the judge needs at least {min_samples} in each",
            count_of(canary_values.len(), "canary value"),
            count_of(base.len(), "baseline value"),
        );
        return result;
    }
    // Both series hold at least `min_samples >= 1` finite values here.
    let b_mean = base.iter().sum::<f64>() / base.len() as f64;
    let c_mean = canary_values.iter().sum::<f64>() / canary_values.len() as f64;

    let test = mann_whitney(&canary_values, &base);
    let p = match spec.direction {
        Direction::Increase => test.p_greater,
        Direction::Decrease => test.p_less,
        Direction::Either => test.p_two_sided,
    };
    let alpha = 1.0 - spec.confidence;
    let significant = p < alpha;
    let mean_u = canary_values.len() as f64 * base.len() as f64 / 2.0;
    let higher = match spec.direction {
        Direction::Increase => true,
        Direction::Decrease => false,
        Direction::Either => test.u > mean_u,
    };
    // The means must move the same way as the ranks, by more than the allowed change.
    let beyond_allowed = match relative_change {
        Some(r) => {
            if higher {
                r > spec.allowed_change
            } else {
                -r > spec.allowed_change
            }
        }
        None => {
            if higher {
                c_mean > b_mean
            } else {
                c_mean < b_mean
            }
        }
    };
    result.u = Some(test.u);
    result.p_value = Some(p);
    result.verdict = match (significant && beyond_allowed, higher) {
        (false, _) => Verdict::Pass,
        (true, true) => Verdict::High,
        (true, false) => Verdict::Low,
    };

    let test_name = match spec.direction {
        Direction::Increase => "one-sided Mann-Whitney U test for an increase",
        Direction::Decrease => "one-sided Mann-Whitney U test for a decrease",
        Direction::Either => "two-sided Mann-Whitney U test",
    };
    let (p_text, alpha_text) = p_and_alpha(p, alpha);
    let relation = if significant { "<" } else { "≥" };
    let statistics = format!(
        "{test_name}, U = {}, p = {p_text} {relation} {alpha_text}, {} and {}",
        number(test.u),
        count_of(canary_values.len(), "canary value"),
        count_of(base.len(), "baseline value"),
    );
    // The head names the means; the note (inside the parentheses) the size of the change.
    let (head, note) = if b_mean == 0.0 {
        if c_mean == 0.0 {
            ("canary and baseline both average 0".to_string(), String::new())
        } else {
            (
                format!("canary mean {} against a baseline mean of 0", number(c_mean)),
                "a zero-inflated baseline has no ratio, so any significant move away from 0 counts as beyond the allowed change; "
                    .to_string(),
            )
        }
    } else {
        describe_change(c_mean, b_mean, relative_change.unwrap_or(0.0))
    };
    let direction_word = if higher { "higher" } else { "lower" };
    let conclusion = match result.verdict {
        Verdict::High | Verdict::Low => format!("{direction_word}, which this metric counts as a failure"),
        _ if !significant => match spec.direction {
            Direction::Increase => "no significant increase: pass".to_string(),
            Direction::Decrease => "no significant decrease: pass".to_string(),
            Direction::Either => "no significant change: pass".to_string(),
        },
        _ if (higher && c_mean > b_mean) || (!higher && c_mean < b_mean) => {
            format!("significantly {direction_word} but within the allowed change of {}: pass", percent(spec.allowed_change))
        }
        _ => format!("the ranks are significantly {direction_word} but the mean did not move that way: pass"),
    };
    result.explanation = format!("{head} ({note}{statistics}{removed_note}): {conclusion}");
    result
}

fn removed_note(baseline_removed: usize, canary_removed: usize) -> String {
    match (canary_removed, baseline_removed) {
        (0, 0) => String::new(),
        (c, 0) => format!(", after removing {} NaN or infinite canary value{}", c, plural(c)),
        (0, b) => format!(", after removing {} NaN or infinite baseline value{}", b, plural(b)),
        (c, b) => format!(", after removing {c} NaN or infinite canary and {b} baseline value{}", plural(b)),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn count_of(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", plural(n))
}

/// "canary mean 0.0245 is 2.3x the baseline mean 0.0106" and "+131%; ".
fn describe_change(canary: f64, baseline: f64, relative: f64) -> (String, String) {
    let ratio = canary / baseline;
    let head = if baseline > 0.0 && canary > 0.0 && !(2.0 / 3.0..=1.5).contains(&ratio) {
        format!("canary mean {} is {}x the baseline mean {}", number(canary), number_sig(ratio, 2), number(baseline))
    } else {
        format!("canary mean {} against the baseline mean {}", number(canary), number(baseline))
    };
    (head, format!("{}; ", signed_percent(relative)))
}

fn signed_percent(relative: f64) -> String {
    let sign = if relative > 0.0 { "+" } else { "" };
    format!("{sign}{}", percent(relative))
}

fn percent(fraction: f64) -> String {
    format!("{}%", number_sig(fraction * 100.0, 3))
}

/// A number with four significant digits, for means and statistics.
pub(crate) fn number(x: f64) -> String {
    number_sig(x, 4)
}

/// `x` rounded to `digits` significant digits, without trailing zeros; scientific notation for
/// very large or small magnitudes.
pub(crate) fn number_sig(x: f64, digits: i32) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    let magnitude = x.abs().log10().floor() as i32;
    if !(-6..9).contains(&magnitude) {
        return format!("{:.*e}", (digits - 1).max(0) as usize, x);
    }
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The p-value and the significance level, written so that they are never shown equal.
fn p_and_alpha(p: f64, alpha: f64) -> (String, String) {
    let alpha_text = number_sig(alpha, 3);
    for digits in [2, 3, 4, 6] {
        let p_text = number_sig(p, digits);
        if p_text != alpha_text {
            return (p_text, alpha_text);
        }
    }
    (format!("{p}"), format!("{alpha}"))
}

/// The upper tail of the standard normal distribution, `P(Z > z)`.
pub(crate) fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function, to about 1e-15 relative accuracy: a positive-term series
/// for `|x| < 2.5` and a continued fraction beyond (no cancellation in either).
pub(crate) fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 2.5 {
        // erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_{n>=0} 2^n x^(2n+1) / (1*3*...*(2n+1))
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term > sum * 1e-17 {
            n += 1.0;
            term *= 2.0 * x * x / (2.0 * n + 1.0);
            sum += term;
        }
        return 1.0 - 2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp() * sum;
    }
    if x > 27.0 {
        return 0.0;
    }
    // erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))),
    // evaluated with the modified Lentz algorithm.
    let tiny = 1e-300;
    let mut f = x;
    let mut c = x;
    let mut d = 0.0;
    for k in 1..200 {
        let a = k as f64 / 2.0;
        d = x + a * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = x + a / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(direction: Direction) -> JudgeSpec {
        JudgeSpec { direction, confidence: 0.95, allowed_change: 0.0, min_samples: 5 }
    }

    fn close(a: f64, b: f64, relative: f64) -> bool {
        (a - b).abs() <= relative * b.abs().max(1e-300)
    }

    #[test]
    fn erfc_matches_the_python_standard_library() {
        // python3 -c 'import math; print([repr(math.erfc(x)) for x in (0.0, 0.1, ...)])'
        let cases = [
            (0.0, 1.0),
            (0.1, 0.8875370839817152),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (2.0, 0.004677734981047265),
            (2.4999, 0.0004071699003334514),
            (2.5, 0.0004069520174449589),
            (3.0, 2.2090496998585438e-05),
            (5.0, 1.5374597944280351e-12),
            (10.0, 2.088487583762545e-45),
            (-1.0, 1.842700792949715),
        ];
        for (x, want) in cases {
            assert!(close(erfc(x), want, 1e-12), "erfc({x}) = {} want {want}", erfc(x));
        }
    }

    /// Oracle: scipy 1.17.1, `mannwhitneyu(x, y, alternative=a, method="asymptotic",
    /// use_continuity=True)` for a in ("greater", "less", "two-sided"); `statistic` is U of x.
    #[test]
    fn p_values_match_scipy() {
        type Case = (&'static [f64], &'static [f64], f64, [f64; 3]);
        let cases: [Case; 4] = [
            (
                &[0.021, 0.025, 0.019, 0.030, 0.024, 0.022, 0.027, 0.026, 0.023, 0.028],
                &[0.010, 0.012, 0.009, 0.011, 0.013, 0.010, 0.008, 0.012, 0.011, 0.010],
                100.0,
                [8.830550583446751e-05, 0.9999349003184231, 0.00017661101166893502],
            ),
            (
                &[1.0, 2.0, 2.0, 3.0, 4.0, 5.0],
                &[2.0, 3.0, 3.0, 4.0, 6.0, 7.0, 8.0],
                10.5,
                [0.9442203472746089, 0.07400915363616337, 0.14801830727232673],
            ),
            (&[0.0, 0.0, 0.0, 1.0, 0.0], &[0.0, 0.0, 0.0, 0.0, 0.0], 15.0, [0.2118553985833967, 0.8849303297782918, 0.4237107971667934]),
            (
                &[3.1, 2.9, 3.3, 3.0, 3.4, 3.2, 2.8, 3.5],
                &[3.0, 2.7, 2.9, 3.1, 2.8, 3.0, 2.6, 2.9, 3.2],
                55.5,
                [0.032830949235976147, 0.9736642868921171, 0.06566189847195229],
            ),
        ];
        for (x, y, u, [greater, less, two_sided]) in cases {
            let got = mann_whitney(x, y);
            assert_eq!(got.u, u, "U of {x:?}");
            assert!(close(got.p_greater, greater, 1e-9), "greater {} want {greater}", got.p_greater);
            assert!(close(got.p_less, less, 1e-9), "less {} want {less}", got.p_less);
            assert!(close(got.p_two_sided, two_sided, 1e-9), "two-sided {} want {two_sided}", got.p_two_sided);
        }
    }

    #[test]
    fn a_clearly_worse_canary_fails_with_the_numbers_in_the_sentence() {
        let baseline = [0.010, 0.012, 0.009, 0.011, 0.013, 0.010, 0.008, 0.012, 0.011, 0.010];
        let canary = [0.021, 0.025, 0.019, 0.030, 0.024, 0.022, 0.027, 0.026, 0.023, 0.028];
        let r = compare(&baseline, &canary, &spec(Direction::Increase));
        assert_eq!(r.verdict, Verdict::High);
        assert!(r.is_failure());
        assert_eq!(r.u, Some(100.0));
        assert_eq!(r.baseline_samples, 10);
        assert!((r.relative_change.unwrap() - 1.3113).abs() < 1e-3);
        assert_eq!(
            r.explanation,
            "canary mean 0.0245 is 2.3x the baseline mean 0.0106 (+131%; one-sided Mann-Whitney U test for an increase, \
             U = 100, p = 0.000088 < 0.05, 10 canary values and 10 baseline values): higher, which this metric counts as a failure"
        );
        // The same canary is fine for a metric where only a decrease is bad.
        let r = compare(&baseline, &canary, &spec(Direction::Decrease));
        assert_eq!(r.verdict, Verdict::Pass);
        assert!(r.explanation.ends_with("no significant decrease: pass"), "{}", r.explanation);
        // And it is a failure within the allowed change only when the change is larger.
        let r = compare(&baseline, &canary, &JudgeSpec { allowed_change: 1.5, ..spec(Direction::Increase) });
        assert_eq!(r.verdict, Verdict::Pass);
        assert!(r.explanation.ends_with("significantly higher but within the allowed change of 150%: pass"), "{}", r.explanation);
    }

    #[test]
    fn zero_inflated_baselines_are_explicit() {
        let baseline = [0.0; 8];
        let canary = [0.0, 2.0, 1.0, 3.0, 0.0, 4.0, 1.0, 2.0];
        let r = compare(&baseline, &canary, &JudgeSpec { allowed_change: 10.0, ..spec(Direction::Increase) });
        assert_eq!(r.relative_change, None);
        assert_eq!(r.verdict, Verdict::High);
        assert!(
            r.explanation.starts_with(
                "canary mean 1.625 against a baseline mean of 0 (a zero-inflated baseline has no ratio, so any significant move"
            ),
            "{}",
            r.explanation
        );
        let r = compare(&baseline, &baseline, &spec(Direction::Either));
        assert_eq!((r.verdict, r.p_value), (Verdict::Pass, Some(1.0)));
        assert!(r.explanation.starts_with("canary and baseline both average 0"), "{}", r.explanation);
    }

    #[test]
    fn too_few_values_is_no_data_and_nan_is_removed_and_counted() {
        let r = compare(&[1.0, f64::NAN, 2.0, 3.0, 4.0, 5.0], &[1.0, 2.0, f64::INFINITY, f64::NAN], &spec(Direction::Increase));
        assert_eq!(r.verdict, Verdict::NoData);
        assert_eq!((r.baseline_samples, r.baseline_removed, r.canary_samples, r.canary_removed), (5, 1, 2, 2));
        assert_eq!(
            r.explanation,
            "not enough data to compare: 2 canary values and 5 baseline values, after removing 2 NaN or infinite canary and 1 baseline value; \
             the judge needs at least 5 in each"
        );
        assert_eq!(r.p_value, None);
        assert!(!r.is_failure());
    }

    #[test]
    fn either_direction_reports_which_way() {
        let low = [1.0, 2.0, 1.5, 1.2, 1.1, 0.9];
        let high = [5.0, 6.0, 5.5, 5.2, 5.1, 4.9];
        assert_eq!(compare(&low, &high, &spec(Direction::Either)).verdict, Verdict::High);
        let r = compare(&high, &low, &spec(Direction::Either));
        assert_eq!(r.verdict, Verdict::Low);
        assert!(r.explanation.contains("two-sided") && r.explanation.ends_with("lower, which this metric counts as a failure"));
    }

    #[test]
    fn numbers_are_short_and_p_never_looks_equal_to_alpha() {
        assert_eq!(number(0.0245), "0.0245");
        assert_eq!(number(1234.5678), "1235");
        assert_eq!(number(12345678901.0), "1.235e10");
        assert_eq!(number(-0.5), "-0.5");
        assert_eq!(p_and_alpha(0.0496, 0.05), ("0.0496".to_string(), "0.05".to_string()));
        assert_eq!(p_and_alpha(0.41, 0.050000000000000044), ("0.41".to_string(), "0.05".to_string()));
    }

    fn series() -> impl Strategy<Value = Vec<f64>> {
        proptest::collection::vec(prop_oneof![(0u8..6).prop_map(f64::from), -100.0..100.0f64], 3..15)
    }

    proptest! {
        #[test]
        fn u_matches_a_brute_force_pair_count(x in series(), y in series()) {
            let mut pairs = 0.0;
            for a in &x {
                for b in &y {
                    pairs += if a > b { 1.0 } else if a == b { 0.5 } else { 0.0 };
                }
            }
            prop_assert!((mann_whitney(&x, &y).u - pairs).abs() < 1e-9);
        }

        #[test]
        fn swapping_the_series_flips_high_and_low(x in series(), y in series()) {
            let judge = JudgeSpec { min_samples: 3, ..spec(Direction::Either) };
            let forward = compare(&x, &y, &judge).verdict;
            let backward = compare(&y, &x, &judge).verdict;
            let flipped = match forward { Verdict::High => Verdict::Low, Verdict::Low => Verdict::High, other => other };
            prop_assert_eq!(backward, flipped);
        }

        #[test]
        fn identical_series_are_never_significant(x in series(), direction in prop_oneof![Just(Direction::Increase), Just(Direction::Decrease), Just(Direction::Either)]) {
            let r = compare(&x, &x, &JudgeSpec { min_samples: 3, confidence: 0.99, ..spec(direction) });
            prop_assert_eq!(r.verdict, Verdict::Pass);
            prop_assert!(r.p_value.unwrap() >= 0.5);
        }

        #[test]
        fn p_values_are_probabilities(x in series(), y in series()) {
            let t = mann_whitney(&x, &y);
            for p in [t.p_greater, t.p_less, t.p_two_sided] {
                prop_assert!((0.0..=1.0).contains(&p));
            }
        }
    }
}
