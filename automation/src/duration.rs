//! Human durations as written in runbooks and config: `500ms`, `10s`, `10m`,
//! `1h30m`, `7d`, `2w`. Parsed once into a newtype, so an invalid duration
//! cannot exist past loading.

use std::fmt;
use std::str::FromStr;

/// A non-negative duration parsed from `<number><unit>` groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason} (write e.g. `30s`, `10m`, `1h30m`, `7d`)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 604_800_000),
];

impl Duration {
    pub fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    pub fn std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| DurationError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let mut total: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(err("expected a number"));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| err("number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            if unit_len == 0 {
                return Err(err("missing unit (ms, s, m, h, d, w)"));
            }
            let factor = UNITS
                .iter()
                .find(|(u, _)| *u == &rest[..unit_len])
                .map(|(_, f)| *f)
                .ok_or_else(|| err("unknown unit (use ms, s, m, h, d, w)"))?;
            total = n
                .checked_mul(factor)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| err("too large"))?;
            rest = &rest[unit_len..];
        }
        Ok(Duration::from_millis(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, factor) in UNITS.iter().rev() {
            let factor = u128::from(*factor);
            if ms >= factor {
                write!(f, "{}{unit}", ms / factor)?;
                ms %= factor;
            }
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!("10m".parse::<Duration>().unwrap(), Duration::from_secs(600));
        assert_eq!(
            "1h30m".parse::<Duration>().unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            "250ms".parse::<Duration>().unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            "7d".parse::<Duration>().unwrap(),
            Duration::from_secs(7 * 86400)
        );
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["", "10", "m", "10x", "1h30", "-5s", "1.5h"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad} parsed");
        }
        let msg = "10x".parse::<Duration>().unwrap_err().to_string();
        assert!(msg.contains("unknown unit"), "{msg}");
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(Duration::from_secs(5400).to_string(), "1h30m");
        assert_eq!(Duration::from_millis(1500).to_string(), "1s500ms");
    }
}
