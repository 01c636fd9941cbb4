//! A bad setting stops the binary at once with one line naming the setting.
use std::process::Command;

fn run(env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_boxoffice"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run boxoffice");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_settings_stop_start_up_with_one_clear_line() {
    let cases: &[(&str, &str, &str)] = &[
        ("HOLD_TTL_SECONDS", "0", "HOLD_TTL_SECONDS"),
        ("HOLD_TTL_SECONDS", "ten", "HOLD_TTL_SECONDS"),
        ("PAYMENT_FAILURE_RATE", "1.5", "PAYMENT_FAILURE_RATE"),
        ("PAYMENT_LATENCY_MS", "-3", "PAYMENT_LATENCY_MS"),
        ("LISTEN_ADDR", "localhost", "LISTEN_ADDR"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
        ("REDIS_URL", "http://127.0.0.1:6379", "REDIS_URL"),
        ("DEMO_DATA", "maybe", "demo-data"),
        ("JWT_SECRET", "short", "JWT_SECRET"),
        ("REDIS_KEY_PREFIX", "has space", "REDIS_KEY_PREFIX"),
        ("ADMIN_EMAIL", "nobody", "ADMIN_EMAIL"),
    ];
    for (key, value, named) in cases {
        let (code, stderr) = run(&[(key, value)], &["migrate"]);
        assert_eq!(code, 2, "{key}={value}: exit code, stderr: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{key}={value}: one line, got {stderr:?}");
        assert!(
            lines[0].contains(named),
            "{key}={value}: {:?} should name {named}",
            lines[0]
        );
    }
}

#[test]
fn weak_admin_password_is_refused_at_start() {
    let (code, stderr) = run(
        &[
            ("ADMIN_EMAIL", "root@example.com"),
            ("ADMIN_PASSWORD", "123"),
        ],
        &["migrate"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("ADMIN_PASSWORD"), "{stderr}");
}

#[test]
fn unreachable_database_is_a_clear_error() {
    let (code, stderr) = run(
        &[
            ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
            ("DEPENDENCY_TIMEOUT_MS", "500"),
        ],
        &["migrate"],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}
