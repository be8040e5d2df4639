//! A user's story: "the database was down longer than the retries, so the crosses went to the
//! dead letters; now it is back: I replay them, and every cross is stored once — however often I
//! replay, and whether I read the letters from the topic or from the file" (`fxflow dlq
//! replay`, on real Apache Kafka and PostgreSQL, with the worker running beside it).

use std::path::Path;
use std::time::Duration;

use fxflow_tests::{fxflow, wait_for, Broker, Worker};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

fn snapshot(day: u32) -> String {
    let ts = format!("2026-11-{day:02}T10:00:00Z");
    format!(
        r#"{{"v":1,"kind":"QuoteSnapshot","source":"desk","ts":"{ts}","base":"EUR","quotes":[{{"pair":"EUR/USD","bid":"1.1000","ask":"1.1002","ts":"{ts}","source":"desk"}},{{"pair":"EUR/JPY","bid":"160.10","ask":"160.20","ts":"{ts}","source":"desk"}}]}}"#
    )
}

/// A database of its own, so its outage touches no other test.
struct Database {
    name: String,
    runtime: tokio::runtime::Runtime,
}

impl Database {
    fn create() -> Database {
        Database {
            name: fxflow_tests::create_database("fxtest_replay"),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    /// The outage: no new connections, and the open ones cut.
    fn go_down(&self) {
        fxflow_tests::postgres_admin(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", self.name));
        fxflow_tests::postgres_admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            self.name
        ));
    }

    fn come_back(&self) {
        fxflow_tests::postgres_admin(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", self.name));
    }

    /// Rows stored, and distinct (pair, ts, source) among them.
    fn rates(&self) -> (i64, i64) {
        self.runtime.block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&self.url()).await.unwrap();
            sqlx::query_as::<_, (i64, i64)>("SELECT count(*), count(DISTINCT (pair, ts, source)) FROM fx_rates")
                .fetch_one(&mut connection)
                .await
                .unwrap()
        })
    }
}

fn pipeline(dir: &Path, jsonl: &Path) -> std::path::PathBuf {
    let file = dir.join("store.ron");
    std::fs::write(
        &file,
        format!(
            r#"Pipeline(
    name: "store",
    resources: {{
        "kafka": Kafka(brokers: "${{KAFKA_BROKERS}}", topics: {{
            "fx.snapshots": (partitions: 1), "fx.dlq": (partitions: 1) }}),
        "history": Postgres(url: "${{DATABASE_URL}}"),
    }},
    stages: {{
        "snapshots": KafkaSource(resource: "kafka", topics: ["fx.snapshots"], group: "replay-test", kinds: ["QuoteSnapshot"]),
        "validate": Enrich(inputs: ["snapshots"]),
        "crosses": CrossRate(inputs: ["validate"]),
        "history": Postgres(inputs: ["crosses"], resource: "history", migrate: true,
            retry: (attempts: 2, initial_backoff: "100ms", max_backoff: "200ms")),
        "dlq-file": JsonlFile(inputs: ["snapshots.errors", "validate.errors", "history.errors"], path: "{}"),
        "dlq-topic": KafkaSink(inputs: ["snapshots.errors", "validate.errors", "history.errors"], resource: "kafka", topic: "fx.dlq"),
    }},
)"#,
            jsonl.display()
        ),
    )
    .unwrap();
    file
}

#[test]
fn dead_letters_of_a_store_outage_replay_into_the_store_once_from_the_topic_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let brokers = broker.address();
    let database = Database::create();
    let jsonl = dir.path().join("dlq.jsonl");
    let file = pipeline(dir.path(), &jsonl);
    let env = [
        ("KAFKA_BROKERS", brokers.clone()),
        ("DATABASE_URL", database.url()),
        ("FXFLOW_TELEMETRY", format!("127.0.0.1:{}", fxflow_tests::free_port())),
    ];
    let command = |args: &[&str]| {
        let mut command = fxflow(args);
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = command(args);
        assert_eq!(code, Some(0), "fxflow {args:?}\n{stdout}\n{stderr}");
        stdout
    };
    ok(&["topics", "create", "--resource", "kafka", file.to_str().unwrap()]);
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let send = |payload: &[u8]| {
        producer
            .send(BaseRecord::to("fx.snapshots").key("desk").payload(payload))
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    };

    let mut worker = Worker::start("store", &file, &env, dir.path());
    send(snapshot(1).as_bytes());
    wait_for("the first snapshot's 3 crosses stored", Duration::from_secs(60), || {
        (database.rates().0 == 3).then_some(())
    });

    // The outage: two snapshots' crosses (6) and a garbage message become dead letters.
    database.go_down();
    send(snapshot(2).as_bytes());
    send(snapshot(3).as_bytes());
    send(b"{not json");
    wait_for("7 dead letters in the file", Duration::from_secs(60), || {
        (std::fs::read_to_string(&jsonl).unwrap_or_default().lines().count() >= 7).then_some(())
    });
    database.come_back();
    let from_topic = ["--brokers", brokers.as_str()];
    let replay = |args: &[&str]| ok(&[&["dlq", "replay", file.to_str().unwrap()], args].concat());

    wait_for("7 dead letters on fx.dlq", Duration::from_secs(60), || {
        (ok(&[&["dlq", "list", "--json"], &from_topic[..]].concat())
            .lines()
            .count()
            == 7)
            .then_some(())
    });
    let dry = replay(&[&from_topic[..], &["--dry-run"]].concat());
    assert!(
        dry.contains("would replay 7 dead letters")
            && dry.contains("6 to `history`")
            && dry.contains("1 to `snapshots`"),
        "{dry}"
    );
    assert_eq!(database.rates().0, 3, "a dry run changes nothing");

    // One letter by id, as an interrupted replay leaves things; then the rest resumes.
    let listed: Vec<serde_json::Value> =
        ok(&[&["dlq", "list", "--json", "--stage", "history"], &from_topic[..]].concat())
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(listed.len(), 6);
    let first = listed[0]["id"].as_str().unwrap();
    let one = replay(&[&from_topic[..], &["--id", first]].concat());
    assert!(one.contains("replayed 1 dead letters"), "{one}");
    assert_eq!(database.rates().0, 4);

    let rest = replay(&from_topic);
    assert!(rest.contains("replayed 6 dead letters"), "{rest}");
    assert!(rest.contains("skipped 1 replayed before"), "{rest}");
    assert!(
        rest.contains("1 failed again"),
        "the garbage still does not decode: {rest}"
    );
    assert_eq!(database.rates(), (9, 9), "every cross stored, once");

    // The garbage came back as a new letter with both failures, not into a loop.
    let letters: Vec<serde_json::Value> =
        ok(&[&["dlq", "list", "--json", "--stage", "snapshots"], &from_topic[..]].concat())
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let again = &letters[1]["letter"];
    assert_eq!(again["reason"], "decode_failed");
    assert_eq!(again["previous"][0]["letter"], letters[0]["id"]);
    assert_eq!(again["previous"][0]["reason"], "decode_failed");
    assert_eq!(
        again["payload"], letters[0]["letter"]["payload"],
        "the same exact bytes"
    );

    // Replaying again: skipped; forced again: stored nothing twice.
    let twice = replay(&[&from_topic[..], &["--stage", "history"]].concat());
    assert!(
        twice.contains("nothing to replay") && twice.contains("skipped 6 replayed before"),
        "{twice}"
    );
    let forced = replay(&[&from_topic[..], &["--stage", "history", "--again"]].concat());
    assert!(forced.contains("replayed 6 dead letters"), "{forced}");
    assert_eq!(database.rates(), (9, 9));

    // The same letters from the JSON-lines file, recorded beside it.
    let from_file = ["--file", jsonl.to_str().unwrap()];
    let by_file = replay(&[&from_file[..], &["--stage", "history"]].concat());
    assert!(by_file.contains("replayed 6 dead letters"), "{by_file}");
    assert_eq!(database.rates(), (9, 9));
    assert!(replay(&[&from_file[..], &["--stage", "history"]].concat()).contains("skipped 6 replayed before"));
    let recorded = std::fs::read_to_string(format!("{}.replayed", jsonl.display())).unwrap();
    assert_eq!(recorded.lines().count(), 6, "{recorded}");

    // Letters of stages the pipeline does not have are not fed anywhere.
    let other = dir.path().join("other.ron");
    std::fs::write(
        &other,
        r#"Pipeline(name: "other", stages: { "in": Replay(path: "examples/data/ecb-eurofxref-hist.csv"), "out": Null(inputs: ["in"]) })"#,
    )
    .unwrap();
    let elsewhere = ok(&["dlq", "replay", other.to_str().unwrap(), "--brokers", &brokers]);
    assert!(
        elsewhere.contains("nothing to replay") && elsewhere.contains("skipped 8 of stages not in `other`"),
        "{elsewhere}"
    );
    assert!(worker.is_running(), "the worker ran on beside every replay");
    assert!(worker.terminate(Duration::from_secs(60)).success(), "{}", worker.logs());
}
