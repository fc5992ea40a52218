//! `tahoe-notifier news publish`: posts an operator news message to the grid's news directory.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use notifier_core::net::gateway::Gateway;
use notifier_core::news::feed;
use notifier_core::news::{NewsDraft, Severity};
use tahoe_caps::Cap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::context::Context;

/// `news` subcommands.
#[derive(Debug, Args)]
pub struct NewsArgs {
    #[command(subcommand)]
    command: NewsCommand,
}

#[derive(Debug, Subcommand)]
enum NewsCommand {
    /// Publish the message on standard input (plain text or Markdown) to the news directory.
    ///
    /// The news directory's write-cap comes from the keyring (--cap, a cap added with
    /// `caps add --keep-write`) or, without --cap, from the first line of standard input,
    /// followed by the message. Never from the command line.
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
struct PublishArgs {
    /// Id of the news directory's write-cap in the cap store.
    #[arg(long, value_name = "ID")]
    cap: Option<String>,
    /// A title shown as the notification's heading.
    #[arg(long)]
    title: Option<String>,
    /// How important it is: critical news is shown even in quiet hours.
    #[arg(long, default_value = "info", value_parser = ["info", "warning", "critical"])]
    severity: String,
    /// When it stops being relevant (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    expires: Option<String>,
    /// The gateway to write through, instead of the imported grid's.
    #[arg(long, value_name = "URL")]
    gateway: Option<String>,
}

/// Runs a `news` subcommand.
pub fn run(ctx: &Context, args: &NewsArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        NewsCommand::Publish(publish) => run_publish(ctx, publish),
    }
}

fn run_publish(ctx: &Context, args: &PublishArgs) -> anyhow::Result<ExitCode> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the message from standard input (is it UTF-8 text?)")?;
    let (write_cap, message) = match &args.cap {
        Some(id) => {
            let cap = ctx
                .cap_store()
                .get_cap(id)
                .with_context(|| format!("cannot read cap {id} from the keyring"))?;
            (cap, input)
        }
        None => {
            let (first, rest) = input.split_once('\n').unwrap_or((input.as_str(), ""));
            let cap: Cap = first.trim().parse().context(
                "without --cap, the first line of standard input must be the news directory's write-cap",
            )?;
            (cap, rest.to_owned())
        }
    };
    if !write_cap.is_directory() || write_cap.is_readonly() {
        bail!("publishing needs the write-cap of the news directory (URI:DIR2:… or URI:DIR2-MDMF:…), not a read-only or file cap");
    }
    if message.trim().is_empty() {
        bail!("the message is empty: write it on standard input");
    }
    let severity: Severity = args.severity.parse().map_err(|_| {
        anyhow::anyhow!(
            "unknown severity {:?}: use info, warning or critical",
            args.severity
        )
    })?;
    let expires = args
        .expires
        .as_deref()
        .map(|text| OffsetDateTime::parse(text, &Rfc3339))
        .transpose()
        .context("--expires must be an RFC 3339 time such as 2026-12-01T00:00:00Z")?;
    let gateway_url = match &args.gateway {
        Some(url) => url.clone(),
        None => ctx
            .server_store()
            .grids()
            .context("cannot read the configured grids")?
            .into_iter()
            .map(|grid| grid.gateway_url)
            .next()
            .context("no gateway: import a grid file (servers import) or pass --gateway")?,
    };
    let gateway = Gateway::new(&gateway_url).context("the gateway URL is unusable")?;
    let draft = NewsDraft {
        title: args.title.clone(),
        severity,
        expires,
        body: message,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let name = runtime
        .block_on(feed::publish(&gateway, &write_cap, &draft))
        .context("publishing the news message failed")?;
    if ctx.json() {
        println!("{}", serde_json::json!({ "published": name }));
    } else {
        println!("published v1/{name}");
    }
    Ok(ExitCode::SUCCESS)
}
