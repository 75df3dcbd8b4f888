//! `ferrum admin ...` (projects, users, tokens) and `ferrum whoami`.
//!
//! The only place the CLI prints a token: right after the server created
//! it, as the last line of output, because it cannot be shown again.

use anyhow::Result;
use ferrum_api::{
    ActivationLink, Project, ProjectCreate, Role, SshKey, SshKeyCreate, Token, TokenCreate, TokenCreated, User, UserCreate, UserCreated,
    UserDisable,
};

use super::Ctx;
use ferrum_api::accounts::{
    AccountRequest, AccountRequestAccepted, AccountRequestApprove, AccountRequestApproved, AccountRequestCreate, AccountRequestListQuery,
    AccountRequestReject, AccountRequestState, MemberAdd, ProjectPatch,
};

use crate::args::{
    AccountRequestArgs, AdminCommand, KeyCommand, MemberCommand, MyTokenCommand, ProjectCommand, RequestState, RequestsCommand,
    TokenCommand, UserCommand,
};
use crate::client::NoQuery;
use crate::render;

pub async fn run(ctx: &Ctx, cmd: AdminCommand) -> Result<()> {
    match cmd {
        AdminCommand::Project(ProjectCommand::Add { name, quota_node_hours, class }) => {
            let body = ProjectCreate { name, class, quota_node_hours };
            let answer = ctx.client.post::<Project, _>(&["projects"], &body).await?;
            ctx.show(&answer, render::project_detail)
        }
        AdminCommand::Project(ProjectCommand::List) => {
            let answer = ctx.client.get::<Vec<Project>, _>(&["projects"], &NoQuery {}).await?;
            ctx.show(&answer, |projects, opts| render::projects_table(projects, opts))
        }
        AdminCommand::User(UserCommand::Add { name, projects, email, admin }) => {
            let role = if admin { Role::Admin } else { Role::User };
            let body = UserCreate { name, role, email, projects };
            let answer = ctx.client.post::<UserCreated, _>(&["users"], &body).await?;
            ctx.show(&answer, |created, opts| {
                format!("{}\n{}", render::user_detail(&created.user, &[], opts), token_lines(&created.user.name, &created.token))
            })
        }
        AdminCommand::User(UserCommand::List) => {
            let answer = ctx.client.get::<Vec<User>, _>(&["users"], &NoQuery {}).await?;
            ctx.show(&answer, |users, opts| render::users_table(users, opts))
        }
        AdminCommand::User(UserCommand::Disable { name, reason }) => {
            let answer = ctx.client.post::<User, _>(&["users", &name, "disable"], &UserDisable { reason }).await?;
            ctx.show(&answer, |user, opts| render::user_detail(user, &[], opts))
        }
        AdminCommand::User(UserCommand::Enable { name }) => {
            let answer = ctx.client.post::<User, _>(&["users", &name, "enable"], &NoQuery {}).await?;
            ctx.show(&answer, |user, opts| render::user_detail(user, &[], opts))
        }
        AdminCommand::User(UserCommand::ActivationLink { name }) => {
            let answer = ctx.client.post::<ActivationLink, _>(&["users", &name, "activation-link"], &NoQuery {}).await?;
            ctx.show(&answer, |link, _| {
                format!(
                    "activation link for {} (works once, until {}; send it to the user only):\n{}\n",
                    link.user,
                    link.expires_at.to_rfc3339(),
                    link.url
                )
            })
        }
        AdminCommand::Token(TokenCommand::Create { user }) => {
            let answer = ctx.client.post::<TokenCreated, _>(&["users", &user, "tokens"], &NoQuery {}).await?;
            ctx.show(&answer, |created, _| token_lines(&created.user, &created.token))
        }
        AdminCommand::BootToken => {
            let answer = ctx.client.post::<ferrum_api::BootTokenCreated, _>(&["boot", "tokens"], &NoQuery {}).await?;
            ctx.show(&answer, |created, _| {
                format!("boot-service token for ferrum-pxe (shown once; put it in its [controller] token_file):\n{}", created.token)
            })
        }
        AdminCommand::Audit(args) => super::usage::audit(ctx, args).await,
        AdminCommand::Project(ProjectCommand::Set { name, quota_node_hours, no_quota, class, manager }) => {
            let body = ProjectPatch {
                class: class.map(Some),
                quota_node_hours: if no_quota { Some(None) } else { quota_node_hours.map(Some) },
                manager: manager.map(Some),
            };
            let answer = ctx.client.patch::<Project, _>(&["projects", &name], &body).await?;
            ctx.show(&answer, render::project_detail)
        }
        AdminCommand::Project(ProjectCommand::Member(MemberCommand::Add { project, user })) => {
            let answer = ctx.client.post::<Project, _>(&["projects", &project, "members"], &MemberAdd { user }).await?;
            ctx.show(&answer, render::project_detail)
        }
        AdminCommand::Project(ProjectCommand::Member(MemberCommand::Remove { project, user })) => {
            let answer = ctx.client.delete::<Project>(&["projects", &project, "members", &user]).await?;
            ctx.show(&answer, render::project_detail)
        }
        AdminCommand::Requests { command } => requests(ctx, command.unwrap_or(RequestsCommand::List { state: None })).await,
    }
}

/// `ferrum admin requests ...`.
async fn requests(ctx: &Ctx, cmd: RequestsCommand) -> Result<()> {
    match cmd {
        RequestsCommand::List { state } => {
            let state = state.map(|s| match s {
                RequestState::Pending => AccountRequestState::Pending,
                RequestState::Approved => AccountRequestState::Approved,
                RequestState::Rejected => AccountRequestState::Rejected,
            });
            let answer = ctx.client.get::<Vec<AccountRequest>, _>(&["account-requests"], &AccountRequestListQuery { state }).await?;
            ctx.show(&answer, |requests, opts| render::account_requests_table(requests, opts))
        }
        RequestsCommand::Show { id } => {
            let answer = ctx.client.get::<AccountRequest, _>(&["account-requests", &id.to_string()], &NoQuery {}).await?;
            ctx.show(&answer, render::account_request_detail)
        }
        RequestsCommand::Approve { id, reason, class, quota_node_hours } => {
            let body = AccountRequestApprove { reason, project_class: class, quota_node_hours };
            let answer = ctx.client.post::<AccountRequestApproved, _>(&["account-requests", &id.to_string(), "approve"], &body).await?;
            ctx.show(&answer, |approved, opts| {
                // No mail went: the admin passes the link on.
                let link = approved
                    .activation_url
                    .as_ref()
                    .map(|url| format!("no mail server: send this one-time link to the user, where they set their password:\n{url}\n"))
                    .unwrap_or_default();
                // A project's manager gets no token: the user makes their own.
                let token = approved.token.as_deref().map(|t| token_lines(&approved.user.name, t)).unwrap_or_default();
                format!("{}\n{link}{token}", render::user_detail(&approved.user, &[], opts))
            })
        }
        RequestsCommand::Reject { id, reason } => {
            let body = AccountRequestReject { reason };
            let answer = ctx.client.post::<AccountRequest, _>(&["account-requests", &id.to_string(), "reject"], &body).await?;
            ctx.show(&answer, render::account_request_detail)
        }
    }
}

/// `ferrum account request ...`: needs no token.
pub async fn request_account(ctx: &Ctx, args: AccountRequestArgs) -> Result<()> {
    let body = AccountRequestCreate {
        name: args.name,
        email: args.email,
        affiliation: args.affiliation,
        project: args.project,
        class: args.class,
        motivation: args.motivation,
        status: args.status.map(Into::into),
    };
    let answer = ctx.client.post::<AccountRequestAccepted, _>(&["account-requests"], &body).await?;
    ctx.show(&answer, |accepted, _| {
        format!("{}\nAn admin will approve or reject it; they will send you your API token.\n", accepted.message)
    })
}

/// A new token, as the last line so scripts can take it with `tail -n 1`.
fn token_lines(user: &str, token: &str) -> String {
    format!("API token for {user} (shown once; ferrum keeps only its hash):\n{token}\n")
}

/// `ferrum token ...`: the caller's own tokens.
pub async fn my_tokens(ctx: &Ctx, cmd: MyTokenCommand) -> Result<()> {
    let me = ctx.client.get::<User, _>(&["users", "me"], &NoQuery {}).await?.value.name;
    match cmd {
        MyTokenCommand::List => {
            let answer = ctx.client.get::<Vec<Token>, _>(&["users", &me, "tokens"], &NoQuery {}).await?;
            ctx.show(&answer, |tokens, opts| render::tokens_table(tokens, opts))
        }
        MyTokenCommand::Create { name, expires, read_only } => {
            let body = TokenCreate { name, expires_in: expires, expires_at: None, read_only };
            let answer = ctx.client.post::<TokenCreated, _>(&["users", &me, "tokens"], &body).await?;
            ctx.show(&answer, |created, _| {
                let expires = created.expires_at.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
                let kind = if created.read_only { "read-only" } else { "full" };
                format!("token {} ({kind}, expires: {expires})\n{}", created.id, token_lines(&created.user, &created.token))
            })
        }
        MyTokenCommand::Revoke { id } => {
            let answer = ctx.client.delete::<Token>(&["users", &me, "tokens", &id.to_string()]).await?;
            ctx.show(&answer, |t, _| format!("token {} revoked\n", t.id))
        }
    }
}

pub async fn my_keys(ctx: &Ctx, cmd: KeyCommand) -> Result<()> {
    let me = ctx.client.get::<User, _>(&["users", "me"], &NoQuery {}).await?.value.name;
    match cmd {
        KeyCommand::Add { file, name } => {
            let text = std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("{}: cannot read the key: {e}", file.display()))?;
            let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
            let Some(public_key) = line else { anyhow::bail!("{}: no public key in the file", file.display()) };
            let body = SshKeyCreate { name, public_key: public_key.to_owned() };
            let answer = ctx.client.post::<SshKey, _>(&["users", &me, "ssh-keys"], &body).await?;
            ctx.show(&answer, |k, _| format!("key {} added: {}\n", k.id, k.fingerprint))
        }
        KeyCommand::List => {
            let answer = ctx.client.get::<Vec<SshKey>, _>(&["users", &me, "ssh-keys"], &NoQuery {}).await?;
            ctx.show(&answer, |keys, opts| render::ssh_keys_table(keys, opts))
        }
        KeyCommand::Remove { id } => {
            let answer = ctx.client.delete::<SshKey>(&["users", &me, "ssh-keys", &id.to_string()]).await?;
            ctx.show(&answer, |k, _| format!("key {} removed: {}\n", k.id, k.fingerprint))
        }
    }
}

pub async fn whoami(ctx: &Ctx) -> Result<()> {
    let answer = ctx.client.get::<User, _>(&["users", "me"], &NoQuery {}).await?;
    if ctx.json {
        return ctx.show(&answer, |_, _| String::new());
    }
    // Which server answered, and its version when /healthz tells it.
    let server = match ctx.client.health().await {
        Ok(health) => format!("{} (version {}, {})", ctx.client.base(), health.value.version, health.value.status),
        Err(_) => ctx.client.base().to_owned(),
    };
    let mut extra = vec![("server", server), ("url from", ctx.settings.url_origin.to_string())];
    if let Some(origin) = &ctx.settings.token_origin {
        extra.push(("token from", origin.to_string()));
    }
    ctx.show(&answer, |user, opts| render::user_detail(user, &extra, opts))
}
