//! [`Timestamp`]: seconds since the Unix epoch, RFC 3339 on the wire.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A point in time with one-second precision. Serialized as RFC 3339 (`2026-11-23T17:00:00Z`);
/// deserialized from RFC 3339 or from an integer count of seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Self(secs)
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// Parses RFC 3339 (`2026-11-23T17:00:00Z`, `2026-11-23T18:00:00+01:00`, fractions of a
    /// second dropped) or a decimal count of seconds. An impossible date (`2026-02-31`) or time
    /// (`25:00`) is `None`, as is a time without its offset.
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(secs) = text.parse::<i64>() {
            return Some(Self(secs));
        }
        let t: jiff::Timestamp = text.parse().ok()?;
        Some(Self(t.as_second()))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, whole seconds: `2026-11-23T17:00:00Z`. A time outside the years
    /// -9999 to 9999, which no RFC 3339 text can hold, prints as its count of seconds (which
    /// [`Timestamp::parse`] reads back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_second(self.0) {
            Ok(t) => write!(f, "{t}"),
            Err(_) => write!(f, "{}", self.0),
        }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX)),
        }
    }
}

impl Timestamp {
    /// This time as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.0.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_secs(self.0.unsigned_abs())
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time or seconds since the Unix epoch")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom("time out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).ok_or_else(|| E::custom("invalid RFC 3339 time"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for secs in [0, 1, 951_782_400, 1_795_000_000, 4_102_444_800, -86_400] {
            let t = Timestamp(secs);
            assert_eq!(Timestamp::parse(&t.to_string()), Some(t), "{t}");
        }
        assert_eq!(
            Timestamp::parse("2026-11-23T17:00:00Z"),
            Some(Timestamp(1_795_453_200))
        );
        assert_eq!(
            Timestamp::parse("2026-11-23T18:00:00+01:00"),
            Some(Timestamp(1_795_453_200))
        );
        assert_eq!(
            Timestamp::parse("2026-11-23T17:00:00.25Z"),
            Some(Timestamp(1_795_453_200))
        );
        // RFC 3339 allows a space or lower case for `T` and `Z`, as the old parser did.
        for text in ["2026-11-23 17:00:00Z", "2026-11-23t17:00:00z"] {
            assert_eq!(
                Timestamp::parse(text),
                Some(Timestamp(1_795_453_200)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_malformed_times() {
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-23",
            "2026-11-23T17:00:00",
            "2026-11-23T24:00:00Z",
            "2026-11-23T17:61:00Z",
            "x",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn rejects_impossible_dates() {
        // Once rolled over into March by a hand-written parser.
        for bad in [
            "2026-02-31T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T12:00:00Z",
            "2026-00-10T00:00:00Z",
            "2026-01-00T00:00:00Z",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Timestamp::parse("2028-02-29T00:00:00Z"),
            Some(Timestamp(1_835_395_200))
        );
    }

    #[test]
    fn wire_format_is_rfc3339_utc_or_seconds() {
        let t = Timestamp(1_795_453_200);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#""2026-11-23T17:00:00Z""#
        );
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59Z");
        for json in [r#""2026-11-23T17:00:00Z""#, "1795453200", r#""1795453200""#] {
            assert_eq!(
                serde_json::from_str::<Timestamp>(json).unwrap(),
                t,
                "{json}"
            );
        }
        assert!(serde_json::from_str::<Timestamp>(r#""2026-02-31T00:00:00Z""#).is_err());
        // Beyond what RFC 3339 can write: seconds, and they read back.
        let far = Timestamp(i64::MAX);
        assert_eq!(far.to_string(), i64::MAX.to_string());
        assert_eq!(Timestamp::parse(&far.to_string()), Some(far));
    }
}
