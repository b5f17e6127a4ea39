//! The `train` binary interrupted for real: Ctrl-C and SIGTERM save a checkpoint and exit 130
//! and 143, `kill -9` at random moments and in the middle of checkpoint writes never leaves a
//! checkpoint that does not load, and a full disk stops the run with an error naming the file
//! while the last checkpoint still loads. Every interrupted run resumes to the same weights as
//! one that never stopped. A bad config or corpus exits 1 with the file (and the key, line or
//! byte) named.

use std::io::{BufRead, BufReader, Lines};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

use model::Checkpoint;
use model::burn::tensor::Device;

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lstm-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small recipe config in `dir`: `epochs` epochs of 12 batches, a checkpoint every 5 steps.
fn config(dir: &Path, epochs: usize) -> PathBuf {
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/epicurious/recipes.json.gz");
    let text = format!(
        r#"[corpus]
path = "{}"
max_records = 400

[data]
vocab_size = 400
seq_len = 32
batch_size = 16

[model]
embedding_dim = 16
hidden_size = 64

[train]
epochs = {epochs}
learning_rate = 0.01
max_batches_per_epoch = 12
checkpoint_every_steps = 5

[generate]
max_tokens = 8
"#,
        corpus.display()
    );
    let path = dir.join("small.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The `train` binary with `--config CONFIG --out RUN` and `extra` flags.
fn train(config: &Path, run: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_train"));
    command
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(run)
        .args(extra);
    command
}

/// Starts `command` with its output piped and waits until it has taken its first step; the
/// child and the rest of its log.
fn start_and_wait_for_training(mut command: Command) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("first-step loss") {
            break;
        }
    }
    (child, lines)
}

/// [`start_and_wait_for_training`], reading the rest of the log on a thread of its own so the
/// child never blocks on a full pipe.
fn start_training_in_background(command: Command) -> Child {
    let (child, lines) = start_and_wait_for_training(command);
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// Runs `command`, sending SIGINT `times` times (5 ms apart) once the first step is logged;
/// the exit code and the log after the first step.
fn ctrl_c_after_first_step(command: Command, times: usize) -> (Option<i32>, Vec<String>) {
    let (mut child, lines) = start_and_wait_for_training(command);
    for _ in 0..times {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        std::thread::sleep(Duration::from_millis(5));
    }
    let log = lines.map(Result::unwrap).collect();
    (child.wait().unwrap().code(), log)
}

/// What every checkpoint of `run` outputs for a fixed input; panics naming one that does not
/// load.
fn outputs(dir: &Path) -> Vec<f32> {
    let device = Device::flex();
    let checkpoint = Checkpoint::open(dir).unwrap();
    let (model, _) = checkpoint
        .load(&device)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let ids = model::ids_tensor(&[2, 3, 4, 5, 6, 7, 1, 9], [2, 4], &device);
    model
        .forward(ids, None)
        .0
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

fn final_outputs(run: &Path) -> Vec<f32> {
    outputs(&Checkpoint::latest(run).unwrap().unwrap().dir)
}

fn run_to_end(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Ctrl-C (SIGINT) and SIGTERM: the step finishes, a checkpoint is saved there, the log
/// prints the resume command, and the exit code is 128 + the signal.
#[test]
fn a_signal_saves_a_checkpoint_and_resuming_ends_where_an_unbroken_run_does() {
    let dir = scratch("signals");
    let config = config(&dir, 3);
    let whole = dir.join("whole");
    run_to_end(&mut train(&config, &whole, &[]));

    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let run = dir.join(format!("signal-{signal}"));
        let child = start_training_in_background(train(&config, &run, &[]));
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(code));
        let saved = Checkpoint::latest(&run)
            .unwrap()
            .expect("a checkpoint at the signal");
        assert!(saved.meta.within_epoch.is_some(), "{saved:?}");
        let resumed = run_to_end(&mut train(&config, &run, &["--resume"]));
        let log = String::from_utf8_lossy(&resumed.stdout);
        assert!(log.contains("resuming from"), "{log}");
        assert!(
            final_outputs(&whole) == final_outputs(&run),
            "signal {signal}"
        );
    }
}

/// A second Ctrl-C during the step that the first lets finish exits at once: no checkpoint is
/// saved for it, and the exit code is still 130.
#[test]
fn a_second_ctrl_c_exits_at_once() {
    let dir = scratch("second-ctrl-c");
    let config = config(&dir, 3);
    // A model slow enough (tens of milliseconds a step) for both signals to land in one step.
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace("hidden_size = 64", "hidden_size = 768")
        .replace("seq_len = 32", "seq_len = 96");
    std::fs::write(&config, text).unwrap();
    let run = dir.join("run");
    let (code, log) = ctrl_c_after_first_step(train(&config, &run, &[]), 2);
    assert_eq!(code, Some(130));
    assert!(!log.iter().any(|l| l.contains("--resume")), "{log:#?}");
    assert!(Checkpoint::latest(&run).unwrap().is_none(), "{log:#?}");
}

/// The resume command is printed with the flags the run was given.
#[test]
fn the_log_prints_the_command_that_resumes() {
    let dir = scratch("resume-command");
    let config = config(&dir, 3);
    let run = dir.join("run");
    let (code, log) = ctrl_c_after_first_step(train(&config, &run, &[]), 1);
    assert_eq!(code, Some(130));
    let expected = format!(
        "cargo run -p train -- --config {} --out {} --resume",
        config.display(),
        run.display()
    );
    assert!(log.iter().any(|l| l.trim() == expected), "{log:#?}");
}

/// `kill -9` three times while a checkpoint is being written, then at fixed moments after the
/// first step: every checkpoint left behind loads, and resuming each time finishes with the
/// unbroken run's weights.
#[test]
fn kill_9_never_leaves_a_checkpoint_that_does_not_load() {
    let dir = scratch("kill-9");
    // A checkpoint after every step: most moments of the run are inside a save.
    let config = config(&dir, 4);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("checkpoint_every_steps = 5", "checkpoint_every_steps = 1"),
    )
    .unwrap();
    let whole = dir.join("whole");
    run_to_end(&mut train(&config, &whole, &[]));

    let run = dir.join("killed");
    let check_all_load = || {
        for checkpoint in Checkpoint::all(&run).unwrap() {
            outputs(&checkpoint.dir);
        }
    };
    // Three times in the middle of writing a checkpoint, for certain.
    for kill in 0..3 {
        let flags: &[&str] = if kill == 0 { &[] } else { &["--resume"] };
        assert!(
            kill_during_a_checkpoint_write(train(&config, &run, flags), &run),
            "the run ended before a checkpoint write could be interrupted"
        );
        check_all_load();
    }
    // Then at moments after the first step; a fixed list keeps the test reproducible.
    for wait_ms in [0, 35, 80, 150, 260] {
        let mut child = start_training_in_background(train(&config, &run, &["--resume"]));
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        check_all_load();
    }
    run_to_end(&mut train(&config, &run, &["--resume"]));
    assert!(final_outputs(&whole) == final_outputs(&run));
}

/// Starts `command` and kills it with SIGKILL as soon as it is writing a checkpoint (a
/// `NAME.tmp` directory exists in the run's checkpoints); false if the run ended first.
fn kill_during_a_checkpoint_write(command: Command, run: &Path) -> bool {
    let mut child = start_training_in_background(command);
    let checkpoints = run.join("checkpoints");
    loop {
        let writing = std::fs::read_dir(&checkpoints)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"));
        if writing {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
    }
}

/// A write that fails (a file-size limit stands in for a full disk) stops the run with an
/// error naming the file and the system's reason; the previous checkpoint still loads.
#[test]
fn a_full_disk_stops_the_run_with_the_file_named_and_the_last_checkpoint_intact() {
    let dir = scratch("disk-full");
    let config = config(&dir, 2);
    let run = dir.join("run");
    run_to_end(&mut train(&config, &run, &["--epochs", "1"]));
    let before = final_outputs(&run);

    let mut command = train(&config, &run, &["--resume"]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // Writes past 64 KiB fail with EFBIG instead of killing the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 64 << 10,
                rlim_max: 64 << 10,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            Ok(())
        });
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("model.bpk") && stderr.contains("File too large"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(final_outputs(&run) == before);
}

/// Runs the binary on `config`, expecting a refusal: exit code 1, `error:` on stderr, no
/// panic and no run directory; returns stderr.
fn refused(config: &Path, run: &Path) -> String {
    let output = train(config, run, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked") && !run.exists(), "{stderr}");
    stderr
}

/// Every out-of-range value in a config is refused by the real binary before anything is
/// written, naming the file and the key.
#[test]
fn out_of_range_values_exit_1_naming_the_file_and_the_key() {
    let dir = scratch("out-of-range");
    let base = std::fs::read_to_string(config(&dir, 1)).unwrap();
    let cases = [
        ("[data]", "vocab_size = 2", "data.vocab_size"),
        ("[data]", "seq_len = 0", "data.seq_len"),
        ("[data]", "batch_size = 0", "data.batch_size"),
        ("[data]", "validation = 1.0", "data.validation"),
        ("[model]", "dropout = 1.0", "model.dropout"),
        ("[model]", "num_layers = 0", "model.num_layers"),
        ("[train]", "learning_rate = 0.0", "train.learning_rate"),
        (
            "[train]",
            "checkpoint_every_steps = 0",
            "train.checkpoint_every_steps",
        ),
        ("[train]", "keep_checkpoints = 0", "train.keep_checkpoints"),
        (
            "[train]",
            "early_stopping_patience = 2",
            "train.early_stopping_patience",
        ),
        (
            "[generate]",
            "temperatures = [0.0]",
            "generate.temperatures",
        ),
        ("[generate]", "max_tokens = 0", "generate.max_tokens"),
    ];
    for (section, line, key) in cases {
        // The small config's own value of the key, if any, makes way.
        let name = line.split(' ').next().unwrap();
        let kept: Vec<&str> = base
            .lines()
            .filter(|l| !l.starts_with(&format!("{name} =")))
            .collect();
        let text = kept.join("\n") + "\n";
        let text = text.replace(&format!("{section}\n"), &format!("{section}\n{line}\n"));
        let config = dir.join("small.toml");
        std::fs::write(&config, text).unwrap();
        let stderr = refused(&config, &dir.join("run"));
        assert!(
            stderr.contains("small.toml") && stderr.contains(key),
            "{line}: {stderr}"
        );
    }
}

/// Every broken corpus stops training with an error naming the file (and the line or byte
/// where there is one), before anything is written.
#[test]
fn broken_corpora_name_the_file_and_the_place() {
    let dir = scratch("broken-corpora");
    let base = std::fs::read_to_string(config(&dir, 1)).unwrap();
    let gz = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&[b'x'; 4000]).unwrap();
        let bytes = encoder.finish().unwrap();
        bytes[..bytes.len() / 2].to_vec()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.json", b"".to_vec(), "empty.json"),
        ("skipped.json", br#"[{"title": "x"}]"#.to_vec(), "skipped"),
        ("utf8.txt", b"recipe for \xff\xfe cake\n".to_vec(), "byte"),
        ("truncated.json.gz", gz, "truncated.json.gz"),
        ("object.json", br#"{"title": "x"}"#.to_vec(), "object.json"),
        ("numbers.json", b"[1, 2, 3]".to_vec(), "numbers.json"),
        (
            "lines.jsonl",
            b"{\"title\": \"a\", \"directions\": \"b\"}\n{oops\n".to_vec(),
            "line 2",
        ),
        ("columns.csv", b"name,steps\na,b\n".to_vec(), "title"),
        (
            "ragged.csv",
            b"title,directions\na,b\nc\n".to_vec(),
            "ragged.csv",
        ),
    ];
    for (name, bytes, expected) in cases {
        let corpus = dir.join(name);
        std::fs::write(&corpus, bytes).unwrap();
        let text = base
            .lines()
            .map(|l| match l.starts_with("path = ") {
                true => format!("path = \"{}\"", corpus.display()),
                false => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = dir.join("case.toml");
        std::fs::write(&config, text).unwrap();
        let e = refused(&config, &dir.join("run"));
        assert!(e.contains(expected) && e.contains(name), "{name}: {e}");
    }
    for missing in [dir.join("no-such.json"), dir.clone()] {
        let line = base.lines().find(|l| l.starts_with("path = ")).unwrap();
        let text = base.replace(line, &format!("path = \"{}\"", missing.display()));
        let config = dir.join("case.toml");
        std::fs::write(&config, text).unwrap();
        let e = refused(&config, &dir.join("run"));
        assert!(e.contains(&missing.display().to_string()), "{e}");
    }
    // Records too short for a single window of data.seq_len + 1 = 33 tokens: no example.
    let short = dir.join("short.json");
    std::fs::write(
        &short,
        br#"[{"title": "toast", "directions": "toast the bread"}]"#,
    )
    .unwrap();
    let line = base.lines().find(|l| l.starts_with("path = ")).unwrap();
    let text = base
        .replace(line, &format!("path = \"{}\"", short.display()))
        .replace("[data]\n", "[data]\nexamples = \"windows\"\n");
    let config = dir.join("case.toml");
    std::fs::write(&config, text).unwrap();
    let e = refused(&config, &dir.join("run"));
    assert!(e.contains("short.json") && e.contains("33 tokens"), "{e}");
}
