use super::*;
use chrono::{Datelike, Duration, TimeZone, Timelike, Weekday};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn sunday_is_zero_or_seven() {
    let from = utc("2026-11-23T00:00:00Z"); // a Monday
    for expr in ["0 2 * * 0", "0 2 * * 7", "0 2 * * SUN"] {
        let next = Schedule::parse(expr, None)
            .unwrap()
            .next_after(from)
            .unwrap();
        assert_eq!(next, utc("2026-11-29T02:00:00Z"), "{expr}");
        assert_eq!(next.weekday(), Weekday::Sun);
    }
}

#[test]
fn day_of_month_or_day_of_week_as_in_cron() {
    // Vixie cron: when both fields are restricted, either matching fires.
    let s = Schedule::parse("0 0 1 * 1", None).unwrap();
    let fires = s.upcoming(utc("2026-11-23T12:00:00Z"), 3);
    assert_eq!(
        fires,
        vec![
            utc("2026-11-30T00:00:00Z"), // Monday
            utc("2026-12-01T00:00:00Z"), // the 1st (a Tuesday)
            utc("2026-12-07T00:00:00Z"), // Monday
        ]
    );
}

#[test]
fn nicknames_and_optional_seconds() {
    let from = utc("2026-11-23T10:15:00Z");
    let daily = Schedule::parse("@daily", None).unwrap();
    assert_eq!(daily.next_after(from), Some(utc("2026-11-24T00:00:00Z")));
    let weekly = Schedule::parse("@weekly", None).unwrap();
    assert_eq!(weekly.next_after(from), Some(utc("2026-11-29T00:00:00Z")));
    let monthly = Schedule::parse("@monthly", None).unwrap();
    assert_eq!(monthly.next_after(from), Some(utc("2026-12-01T00:00:00Z")));
    let every_10s = Schedule::parse("*/10 * * * * *", None).unwrap();
    assert_eq!(
        every_10s.next_after(from),
        Some(utc("2026-11-23T10:15:10Z"))
    );
}

#[test]
fn rejects_bad_lines_and_zones() {
    assert!(matches!(
        Schedule::parse("61 * * * *", None),
        Err(ScheduleError::Cron { .. })
    ));
    assert!(matches!(
        Schedule::parse("* * *", None),
        Err(ScheduleError::Cron { .. })
    ));
    assert_eq!(
        Schedule::parse("0 2 * * *", Some("Mars/Olympus")).unwrap_err(),
        ScheduleError::TimeZone("Mars/Olympus".into())
    );
}

#[test]
fn time_zone_is_honoured() {
    let s = Schedule::parse("0 9 * * *", Some("America/New_York")).unwrap();
    // 09:00 EST is 14:00 UTC in November.
    assert_eq!(
        s.next_after(utc("2026-11-23T00:00:00Z")),
        Some(utc("2026-11-23T14:00:00Z"))
    );
}

#[test]
fn spring_forward_gap_fires_once_after_the_gap() {
    // Europe/Berlin skips 02:00-03:00 on 2026-03-29: a 02:30 job runs at 03:00 CEST.
    let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
    let fires = s.upcoming(utc("2026-03-28T12:00:00Z"), 2);
    assert_eq!(fires[0], utc("2026-03-29T01:00:00Z"));
    assert_eq!(fires[1], utc("2026-03-30T00:30:00Z"));
}

#[test]
fn fall_back_overlap_does_not_run_a_daily_job_twice() {
    // Europe/Berlin repeats 02:00-03:00 on 2026-10-25: a 02:30 job runs once.
    let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
    let fires = s.upcoming(utc("2026-10-24T12:00:00Z"), 2);
    assert_eq!(fires[0], utc("2026-10-25T00:30:00Z"));
    assert_eq!(fires[1], utc("2026-10-26T01:30:00Z"));
    let berlin = fires[0].with_timezone(&Tz::Europe__Berlin);
    assert_eq!((berlin.hour(), berlin.minute()), (2, 30));
}

#[test]
fn upcoming_is_strictly_increasing_across_dst() {
    let s = Schedule::parse("0 * * * *", Some("Europe/Berlin")).unwrap();
    let fires = s.upcoming(utc("2026-10-24T22:30:00Z"), 6);
    assert!(fires.windows(2).all(|w| w[0] < w[1]), "{fires:?}");
}

fn grace() -> Duration {
    Duration::seconds(60)
}

#[test]
fn due_waits_until_the_next_fire() {
    let s = Schedule::parse("0 2 * * *", None).unwrap();
    let last = utc("2026-11-22T02:00:00Z");
    assert_eq!(
        due(
            &s,
            Some(last),
            utc("2026-11-22T12:00:00Z"),
            grace(),
            CatchUp::Skip
        ),
        Due::Wait {
            next: utc("2026-11-23T02:00:00Z")
        }
    );
}

#[test]
fn due_fires_on_time_within_grace() {
    let s = Schedule::parse("0 2 * * *", None).unwrap();
    let last = utc("2026-11-22T02:00:00Z");
    assert_eq!(
        due(
            &s,
            Some(last),
            utc("2026-11-23T02:00:03Z"),
            grace(),
            CatchUp::Skip
        ),
        Due::Fire {
            scheduled: utc("2026-11-23T02:00:00Z")
        }
    );
}

#[test]
fn missed_fires_are_skipped_or_run_once_never_a_burst() {
    // Down from Monday to Thursday noon: three daily fires missed.
    let s = Schedule::parse("0 2 * * *", None).unwrap();
    let last = utc("2026-11-23T02:00:00Z");
    let now = utc("2026-11-26T12:00:00Z");
    assert_eq!(
        due(&s, Some(last), now, grace(), CatchUp::Skip),
        Due::Missed {
            missed: 3,
            latest: utc("2026-11-26T02:00:00Z"),
            run: None
        }
    );
    assert_eq!(
        due(&s, Some(last), now, grace(), CatchUp::Once),
        Due::Missed {
            missed: 3,
            latest: utc("2026-11-26T02:00:00Z"),
            run: Some(utc("2026-11-26T02:00:00Z"))
        }
    );
}

#[test]
fn on_time_fire_after_an_outage_still_runs_under_skip() {
    let s = Schedule::parse("0 2 * * *", None).unwrap();
    let last = utc("2026-11-23T02:00:00Z");
    let now = utc("2026-11-26T02:00:10Z");
    assert_eq!(
        due(&s, Some(last), now, grace(), CatchUp::Skip),
        Due::Missed {
            missed: 3,
            latest: utc("2026-11-26T02:00:00Z"),
            run: Some(utc("2026-11-26T02:00:00Z"))
        }
    );
}

#[test]
fn first_sight_of_a_schedule_counts_nothing_as_missed() {
    let s = Schedule::parse("0 2 * * *", None).unwrap();
    assert_eq!(
        due(
            &s,
            None,
            utc("2026-11-26T12:00:00Z"),
            grace(),
            CatchUp::Once
        ),
        Due::Wait {
            next: utc("2026-11-27T02:00:00Z")
        }
    );
}

#[test]
fn a_per_second_schedule_down_for_a_week_is_counted_boundedly() {
    let s = Schedule::parse("* * * * * *", None).unwrap();
    let last = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    match due(
        &s,
        Some(last),
        last + Duration::days(7),
        grace(),
        CatchUp::Once,
    ) {
        Due::Missed { missed, run, .. } => {
            assert!(missed <= 10_000);
            assert!(run.is_some());
        }
        other => panic!("unexpected {other:?}"),
    }
}
