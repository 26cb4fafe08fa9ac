//! Running the tools the guards drive (`ip`, `nft`, `conntrack`): the
//! output on success, a [`SetupError`] naming the command otherwise.
//! Not a general process library: no shell, no timeouts.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::SetupError;

/// `program args…`, with `stdin` fed to it when given (written before the
/// output is read: small inputs such as rulesets, not streams). Success is
/// exit 0.
pub(crate) fn run(
    program: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<Output, SetupError> {
    let spawn_err = |error| SetupError::Spawn {
        program: program.to_string(),
        error,
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A tool that exits early closes the pipe: its status says why.
        let _ = pipe.write_all(input);
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(SetupError::Failed {
            command: std::iter::once(program)
                .chain(args.iter().copied())
                .collect::<Vec<_>>()
                .join(" "),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out)
}
