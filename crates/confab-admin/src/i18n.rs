//! Every string the console shows, in English and Simplified Chinese, in one table. The
//! language is the administrator's choice (a cookie), the set-up wizard's first step, or
//! `[admin] language`.

/// A language of the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    ZhCn,
}

impl Lang {
    /// The language named by a tag (`en`, `zh-CN`); `None` for others.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        match tag.trim().to_ascii_lowercase().as_str() {
            "en" | "en-us" | "en-gb" => Some(Lang::En),
            "zh-cn" | "zh" | "zh-hans" => Some(Lang::ZhCn),
            _ => None,
        }
    }

    /// The tag written to cookies, the config and `<html lang>`.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The language's own name (what the language switch shows).
    pub fn own_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhCn => "简体中文",
        }
    }

    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    /// The text of `key` in this language (the key itself if the table lacks it, which a
    /// test rules out for the keys the pages use).
    pub fn t(self, key: &str) -> &'static str {
        match TABLE.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, zh)) => match self {
                Lang::En => en,
                Lang::ZhCn => zh,
            },
            None => "??",
        }
    }
}

/// (key, English, 简体中文)
const TABLE: &[(&str, &str, &str)] = &[
    ("console", "Confab admin console", "Confab 管理控制台"),
    ("nav.dashboard", "Dashboard", "仪表盘"),
    ("nav.users", "Users", "用户"),
    ("nav.sessions", "Sessions", "会话"),
    ("nav.settings", "Settings", "设置"),
    ("nav.rooms", "Rooms", "聊天室"),
    ("nav.api", "API tokens", "API 令牌"),
    ("api.intro", "Tokens for the REST API (/api/v1, described in /api/v1/openapi.json): send one as `Authorization: Bearer TOKEN`. A token is shown once; only its digest is stored.", "REST API（/api/v1，说明见 /api/v1/openapi.json）的令牌：以 `Authorization: Bearer 令牌` 发送。令牌只显示一次，服务器只保存其摘要。"),
    ("api.name", "Name", "名称"),
    ("api.create", "Create a token", "创建令牌"),
    ("api.created", "New token (copy it now, it is not shown again):", "新令牌（请立即复制，之后不再显示）："),
    ("api.revoke", "Revoke", "吊销"),
    ("api.revoked", "The token was revoked.", "令牌已吊销。"),
    ("api.none", "No tokens.", "没有令牌。"),
    ("api.by", "Created by", "创建者"),
    ("rooms.none", "No rooms.", "没有聊天室。"),
    ("rooms.none_service", "Group chat is not enabled on this server.", "此服务器未启用群聊。"),
    ("rooms.room", "Room", "聊天室"),
    ("rooms.occupants", "Occupants", "在场人数"),
    ("rooms.persistent", "Persistent", "持久"),
    ("rooms.public", "Public", "公开"),
    ("rooms.destroy", "Destroy", "销毁"),
    ("rooms.destroyed", "The room was destroyed; its occupants were told.", "聊天室已销毁，已通知其中的成员。"),
    ("rooms.gone", "That room no longer exists.", "该聊天室已不存在。"),
    ("nav.audit", "Audit log", "审计日志"),
    ("nav.logout", "Log out", "退出登录"),
    ("language", "Language", "语言"),
    ("switch", "Switch", "切换"),
    ("login.title", "Administrator login", "管理员登录"),
    ("login.jid", "Administrator address (JID)", "管理员地址（JID）"),
    ("login.password", "Password", "密码"),
    ("login.submit", "Log in", "登录"),
    ("login.failed", "Wrong address or password.", "地址或密码错误。"),
    ("login.not_admin", "This account is not an administrator.", "该账户不是管理员。"),
    ("login.limited", "Too many attempts from your address. Wait a few minutes and try again.", "您的地址尝试次数过多，请稍候几分钟再试。"),
    ("login.no_admin", "This server has no administrator yet. Open the set-up link printed in the server's log.", "此服务器还没有管理员。请打开服务器日志中打印的设置链接。"),
    ("login.restart", "Set-up is complete. The server is restarting with the new settings; log in in a moment.", "设置已完成。服务器正在使用新设置重新启动，请稍后登录。"),
    ("error.csrf", "The form has expired or did not come from this console. Reload the page and try again.", "表单已过期或并非来自此控制台。请刷新页面后重试。"),
    ("error.forbidden", "Forbidden", "禁止访问"),
    ("error.not_found", "Not found", "未找到"),
    ("error.storage", "The database did not answer; try again.", "数据库没有响应，请重试。"),
    ("setup.title", "Set up Confab", "设置 Confab"),
    ("setup.intro", "Welcome! A few questions and your XMPP server is ready.", "欢迎！回答几个问题，您的 XMPP 服务器就准备好了。"),
    ("setup.step", "Step", "步骤"),
    ("setup.language", "Language of the console", "控制台语言"),
    ("setup.domain", "Domain", "域名"),
    ("setup.domain_help", "The domain users' addresses end in, e.g. chat.example.org (localhost for a trial).", "用户地址的域名部分，例如 chat.example.org（试用可填 localhost）。"),
    ("setup.domain_bad", "That is not a valid domain name.", "这不是有效的域名。"),
    ("setup.database", "Database", "数据库"),
    ("setup.db_sqlite", "SQLite (embedded, in the data directory; nothing to install)", "SQLite（嵌入式，位于数据目录；无需安装）"),
    ("setup.db_url", "PostgreSQL or MySQL/MariaDB: connection URL", "PostgreSQL 或 MySQL/MariaDB：连接 URL"),
    ("setup.db_url_help", "postgres://user:password@host:5432/database or mysql://user:password@host:3306/database", "postgres://用户:密码@主机:5432/数据库 或 mysql://用户:密码@主机:3306/数据库"),
    ("setup.db_test", "Test connection", "测试连接"),
    ("setup.db_ok", "Connected.", "连接成功。"),
    ("setup.db_failed", "Could not connect:", "无法连接："),
    ("setup.db_bad_url", "The URL must start with postgres:// or mysql://.", "URL 必须以 postgres:// 或 mysql:// 开头。"),
    ("setup.admin", "Administrator account", "管理员账户"),
    ("setup.admin_help", "Do not skip it! This account manages the server from this console.", "请勿跳过！此账户用于在本控制台管理服务器。"),
    ("setup.username", "User name", "用户名"),
    ("setup.password2", "Repeat the password", "再次输入密码"),
    ("setup.mismatch", "The passwords do not match.", "两次输入的密码不一致。"),
    ("setup.bad_user", "That user name is not valid.", "用户名无效。"),
    ("setup.bad_password", "That password is not acceptable (empty?).", "密码不可用（为空？）。"),
    ("setup.exists", "That account already exists; pick another name.", "该账户已存在，请换一个名称。"),
    ("setup.next", "Next", "下一步"),
    ("setup.back", "Back", "上一步"),
    ("setup.finish", "Finish", "完成"),
    ("setup.done", "Set-up complete", "设置完成"),
    ("setup.done_restart", "The settings are saved. The server restarts now to apply them; then log in as", "设置已保存。服务器现在重新启动以应用设置；之后请登录："),
    ("setup.done_manual", "The settings are saved. Restart confabd to apply them, then log in as", "设置已保存。请重新启动 confabd 以应用设置，然后登录："),
    ("setup.saved_to", "Settings written to", "设置已写入"),
    ("setup.to_login", "Go to the login page", "前往登录页面"),
    ("setup.token_bad", "This set-up link is not valid. Use the link printed in the server's log.", "此设置链接无效。请使用服务器日志中打印的链接。"),
    ("setup.token_expired", "This set-up link has expired or was already used. Restart confabd for a new one.", "此设置链接已过期或已被使用。请重新启动 confabd 以获取新链接。"),
    ("setup.closed", "The server is already set up.", "服务器已经设置完成。"),
    ("setup.failed", "Set-up failed:", "设置失败："),
    ("dash.sessions", "Online sessions", "在线会话"),
    ("dash.by_transport", "By transport", "按传输方式"),
    ("dash.users", "Registered users", "注册用户"),
    ("dash.rate", "Stanzas received per second", "每秒接收的节"),
    ("dash.uptime", "Uptime", "运行时间"),
    ("dash.memory", "Memory (resident)", "内存（常驻）"),
    ("dash.cpu", "CPU", "CPU"),
    ("dash.storage", "Storage", "存储"),
    ("dash.chart_sessions", "Sessions, last minutes", "会话数（最近几分钟）"),
    ("dash.chart_rate", "Stanzas per second, last minutes", "每秒节数（最近几分钟）"),
    ("users.search", "Search", "搜索"),
    ("users.none", "No users found.", "没有找到用户。"),
    ("users.create", "Create a user", "创建用户"),
    ("users.jid", "Address (JID)", "地址（JID）"),
    ("users.created", "User created.", "用户已创建。"),
    ("users.exists", "That account already exists.", "该账户已存在。"),
    ("users.invalid", "Invalid address or a domain not served here.", "地址无效，或域名不由本服务器提供。"),
    ("users.bad_password", "That password is not acceptable.", "密码不可用。"),
    ("users.page", "Page", "页"),
    ("users.prev", "Previous", "上一页"),
    ("users.next", "Next", "下一页"),
    ("users.online", "online", "在线"),
    ("users.offline", "offline", "离线"),
    ("users.detail", "User", "用户"),
    ("users.reset", "Reset password", "重置密码"),
    ("users.new_password", "New password", "新密码"),
    ("users.password_set", "Password changed.", "密码已更改。"),
    ("users.delete", "Delete this user", "删除此用户"),
    ("users.delete_confirm", "Type the address again to confirm", "再次输入地址以确认"),
    ("users.deleted", "User deleted.", "用户已删除。"),
    ("users.not_found", "No such user.", "没有该用户。"),
    ("users.roster", "Roster", "联系人"),
    ("users.roster_empty", "The roster is empty.", "联系人列表为空。"),
    ("users.subscription", "Subscription", "订阅"),
    ("users.name", "Name", "名称"),
    ("users.groups", "Groups", "分组"),
    ("sessions.none", "No sessions.", "没有会话。"),
    ("sessions.jid", "Address", "地址"),
    ("sessions.peer", "Client address", "客户端地址"),
    ("sessions.transport", "Transport", "传输方式"),
    ("sessions.tls", "Encrypted", "加密"),
    ("sessions.client", "Resource", "资源"),
    ("sessions.since", "Since (UTC)", "开始时间（UTC）"),
    ("sessions.disconnect", "Disconnect", "断开"),
    ("sessions.disconnected", "The session was disconnected.", "会话已断开。"),
    ("sessions.gone", "That session has already ended.", "该会话已经结束。"),
    ("yes", "yes", "是"),
    ("no", "no", "否"),
    ("settings.readonly", "Read-only: these settings change in the configuration file and take effect after a restart.", "只读：这些设置需在配置文件中更改，重启后生效。"),
    ("settings.domains", "Domains", "域名"),
    ("settings.listeners", "Listeners", "监听地址"),
    ("settings.registration", "Registration", "注册"),
    ("settings.limits", "Limits", "限制"),
    ("settings.modules", "Enabled modules", "已启用模块"),
    ("settings.disabled", "Disabled modules", "已禁用模块"),
    ("settings.certificate", "Certificate", "证书"),
    ("settings.admins", "Administrators", "管理员"),
    ("settings.names", "names", "名称"),
    ("settings.valid", "valid", "有效期"),
    ("settings.days_left", "days left:", "剩余天数："),
    ("settings.expired", "EXPIRED", "已过期"),
    ("settings.file", "Console settings file", "控制台设置文件"),
    ("audit.when", "When (UTC)", "时间（UTC）"),
    ("audit.who", "Administrator", "管理员"),
    ("audit.what", "Action", "操作"),
    ("audit.detail", "Detail", "详情"),
    ("audit.none", "No actions recorded yet.", "尚无记录的操作。"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_translated_once() {
        for (i, (k, en, zh)) in TABLE.iter().enumerate() {
            assert!(!en.is_empty() && !zh.is_empty(), "{k}");
            assert!(
                TABLE.iter().skip(i + 1).all(|(o, _, _)| o != k),
                "{k} twice"
            );
        }
    }

    /// Every `t("…")` key used in the crate's sources is in the table.
    #[test]
    fn every_used_key_exists() {
        let sources = [
            include_str!("pages.rs"),
            include_str!("setup.rs"),
            include_str!("lib.rs"),
            include_str!("html.rs"),
            include_str!("api.rs"),
        ];
        for src in sources {
            for part in src.split(".t(\"").skip(1) {
                let key = part.split('"').next().unwrap_or_default();
                assert!(
                    TABLE.iter().any(|(k, _, _)| *k == key),
                    "missing translation key {key}"
                );
            }
        }
        assert_eq!(Lang::from_tag("zh-CN"), Some(Lang::ZhCn));
        assert_eq!(Lang::ZhCn.t("nav.users"), "用户");
    }
}
