//! `ha-user-docs OUT_DIR`: writes what the package ships beside the binary, generated
//! from the same clap definitions as `--help`: `man8/ha-user.8` and one page per
//! subcommand (`ha-user-run.8`, …), and the bash, zsh and fish completions
//! (`completions/ha-user.bash`, `_ha-user`, `ha-user.fish`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;
use ha_user::cli::Cli;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        anyhow::bail!("usage: ha-user-docs OUT_DIR");
    };
    let out = PathBuf::from(out);
    let mut cmd = Cli::command();
    cmd.build();
    let man = out.join("man8");
    std::fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    write_page(&man, &cmd, "ha-user")?;
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let name = format!("ha-user-{}", sub.get_name());
        let sub = sub.clone().name(name.clone()).display_name(name.clone());
        write_page(&man, &sub, &name)?;
    }
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)
        .with_context(|| format!("creating {}", completions.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut cmd, "ha-user", &completions)
            .with_context(|| format!("writing the {shell} completions"))?;
        println!("{}", path.display());
    }
    Ok(())
}

fn write_page(dir: &Path, cmd: &clap::Command, name: &str) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.8"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section("8")
        .manual("ha")
        .render(&mut page)
        .with_context(|| format!("rendering {name}(8)"))?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}
