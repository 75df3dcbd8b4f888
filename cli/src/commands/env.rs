//! `ferrum env ...`: the environment catalog. Descriptors are read here
//! (YAML, SPEC §5) and validated twice: their shape here, with errors that
//! name the file and the key; their values by the server, whose errors name
//! the field.

use std::path::Path;

use anyhow::{Context, Result};
use ferrum_api::environment::{Environment, EnvironmentDescriptor, EnvironmentQuery};
use serde_json::Value;

use super::Ctx;
use crate::args::EnvCommand;
use crate::client::NoQuery;
use crate::render;

pub async fn run(ctx: &Ctx, cmd: EnvCommand) -> Result<()> {
    match cmd {
        EnvCommand::List => {
            let answer = ctx.client.get::<Vec<Environment>, _>(&["environments"], &NoQuery {}).await?;
            ctx.show(&answer, |envs, opts| render::environments_table(envs, opts))
        }
        EnvCommand::Show { name, version } => {
            // `OWNER/NAME` names another owner's environment.
            let (owner, name) = match name.split_once('/') {
                Some((owner, name)) => (Some(owner.to_owned()), name.to_owned()),
                None => (None, name),
            };
            let answer = ctx.client.get::<Environment, _>(&["environments", &name], &EnvironmentQuery { owner, version }).await?;
            ctx.show(&answer, |env, opts| render::generic(&serde_json::to_value(env).unwrap_or(Value::Null), opts))
        }
        EnvCommand::Add { file } => {
            let descriptor = read_descriptor(&file)?;
            let answer = ctx
                .client
                .post::<Environment, _>(&["environments"], &descriptor)
                .await
                .with_context(|| format!("adding the environment described in {}", file.display()))?;
            ctx.show(&answer, |env, _| {
                format!("added {} version {} ({}), image {}\n", env.descriptor.name, env.descriptor.version, visibility(env), env.image_url)
            })
        }
    }
}

fn visibility(env: &Environment) -> &'static str {
    match env.descriptor.visibility {
        ferrum_api::environment::Visibility::Public => "public",
        ferrum_api::environment::Visibility::Project => "project",
        ferrum_api::environment::Visibility::User => "user",
    }
}

/// Reads a YAML descriptor; errors name the file and, when the parser
/// knows it, the key and line.
pub fn read_descriptor(path: &Path) -> Result<EnvironmentDescriptor> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_descriptor(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn parse_descriptor(text: &str) -> Result<EnvironmentDescriptor, String> {
    serde_saphyr::from_str::<EnvironmentDescriptor>(text).map_err(|e| e.to_string().trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = "# ferrum environment descriptor\nname: \"tiny\"\nversion: 2026112206\ndescription: \"busybox\"\narch: \"x86_64\"\n\
        image: \"tiny-2026112206.raw.zst\"\nformat: \"raw.zst\"\nsha256: \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n\
        size: 50331648\nroot_partition: 1\nboot: \"local\"\nvisibility: \"public\"\n";

    #[test]
    fn descriptors_parse_and_errors_name_the_key() {
        let d = parse_descriptor(TINY).unwrap();
        assert_eq!((d.name.as_str(), d.version, d.root_partition), ("tiny", 2026112206, 1));
        let err = parse_descriptor(&TINY.replace("format: \"raw.zst\"", "format: \"qcow2\"")).unwrap_err();
        assert!(err.contains("qcow2"), "{err}");
        let err = parse_descriptor(&TINY.replace("root_partition: 1\n", "")).unwrap_err();
        assert!(err.contains("root_partition"), "{err}");
        let err = parse_descriptor(&TINY.replace("boot: ", "bootloader: ")).unwrap_err();
        assert!(err.contains("bootloader"), "{err}");
        let err = parse_descriptor(&TINY.replace("size: 50331648", "size: big")).unwrap_err();
        assert!(err.contains("line"), "the line is named: {err}");
    }
}
