//! The seed's FAQ rewritten for betomail, with every error message of the
//! seed (S1-S5, J1-J5) and betomail's exact reply. Each entry has an anchor
//! (`/faq#S3`, `/faq#J4`) that replies and logs can link to.

use super::layout::{esc, page};
use super::session::Ctx;
use super::Lang;
use crate::config::{Config, Protocol, RelayBy};
use axum::response::{IntoResponse, Response};

struct Entry {
    id: &'static str,
    question: String,
    /// HTML; dynamic parts are escaped where they are inserted.
    answer: String,
}

/// The names customers put in their mail program, from the config. Host
/// and domain are HTML-escaped (validated host names: escaping changes
/// nothing); `check` is raw because it only appears inside [`reply`].
struct Names {
    host: String,
    domain: String,
    comma: String,
    check: String,
    pbs_minutes: u64,
    pop_no_grant: Vec<String>,
}

fn names(cfg: &Config) -> Names {
    let domain = cfg.primary_domain().to_string();
    Names {
        host: esc(&cfg.hostname),
        comma: esc(&domain.replacen('.', ",", 1)),
        domain: esc(&domain),
        check: cfg.dns_check_url(),
        pbs_minutes: cfg.relay.pop_before_smtp_seconds.div_ceil(60),
        pop_no_grant: cfg
            .listeners
            .iter()
            .filter(|l| l.protocol == Protocol::Pop3 && !l.grants_relay)
            .map(|l| esc(&l.name))
            .collect(),
    }
}

/// The POP3 server's SEED-8 refusal for a typical mismatching host.
fn refusal_example(check: &str) -> String {
    let ip: std::net::IpAddr = [198, 51, 100, 7].into();
    let name = "dyn-7.isp.example".to_string();
    let report = crate::dns::FcrdnsReport {
        ip,
        ptr: vec![name.clone()],
        forward: [(name, vec![[198, 51, 100, 99].into()])].into(),
        verdict: crate::dns::Verdict::Mismatch,
    };
    format!(
        "-ERR [SYS/PERM] Connection refused: {}. Check your host at {check}",
        report.reason()
    )
}

fn reply(text: &str) -> String {
    format!("<pre>{}</pre>", esc(text))
}

fn entries(l: Lang, cfg: &Config) -> Vec<Entry> {
    let n = names(cfg);
    let (host, domain, comma, check, mins) =
        (&n.host, &n.domain, &n.comma, &n.check, n.pbs_minutes);
    let has_auth = cfg
        .listeners
        .iter()
        .any(|x| x.relay_by.contains(&RelayBy::Auth));
    let no_grant = n.pop_no_grant.join(", ");
    let e = |id, q: &str, a: String| Entry {
        id,
        question: q.to_string(),
        answer: a,
    };
    let ja = l == Lang::Ja;
    vec![
        e("Q1", l.t("受信しようとするとタイムアウトになる。エラーのサーバー名が「localhost」になっている。", "Receiving times out, and the error names the server 'localhost'."),
          if ja { "<p>「localhost」はお客様のコンピュータ自身のことです。ウィルス対策ソフトのメール検査機能が、メールソフトとサーバーの間に入って中継していると、このように表示されます。ウィルス対策ソフトの応答が遅いとタイムアウトになります。</p><p>メールソフトのタイムアウト時間を延ばすか、ウィルス対策ソフトのメール検査機能を外してメールソフトの設定を元に戻してください。詳しくはウィルス対策ソフトのサポートにお問い合わせください。</p>".into() }
          else { "<p>'localhost' is your own computer. An anti-virus program that scans mail sits between your mail program and our server; when it answers slowly, the mail program times out.</p><p>Give the mail program a longer timeout, or switch off the mail scanning and restore your mail program's server settings. The anti-virus vendor's support can help with its settings.</p>".into() }),
        e("Q2", l.t("設定を変えていないのに受信できなくなった(正引きと逆引きが一致しない)。", "I changed nothing and can no longer receive mail (forward and reverse DNS do not match)."),
          if ja { format!("<p>betomailのPOPサーバーは、接続してきたホストのDNSの正引きと逆引きが一致しない場合、接続を拒否します。対象は次のホストです。</p><ul><li>逆引きが登録されていて、その名前の正引きが同じIPアドレスにならないホスト</li><li>逆引きが登録されていて、その名前の正引きがないホスト</li></ul><p>逆引きがまったくないホストは拒否しません。拒否されたときの応答は次のような形です(IPアドレス、逆引きの名前、理由、チェックページのアドレスが入ります)。</p>{}<p>ご利用の接続プロバイダのサポートへ、<strong>「DNSの正引きと逆引きが一致していないので、修正してほしい。」</strong>とお伝えください。ご自分の回線は <a href=\"/dns-check\">DNSチェック</a> で確認できます。プロキシサーバーをお使いの場合などは、結果が実際と異なることがあります。</p>", reply(&refusal_example(check))) }
          else { format!("<p>betomail's POP servers refuse a host whose forward and reverse DNS do not match:</p><ul><li>a host with a reverse (PTR) name that does not resolve back to its IP address</li><li>a host with a reverse name that has no forward (A/AAAA) record</li></ul><p>A host with no reverse name at all is not refused. The refusal looks like this (it names the IP address, the reverse name, the reason and the address of the check page):</p>{}<p>Ask your Internet provider's support: <strong>\"The forward and reverse DNS of my IP address do not match; please fix them.\"</strong> Check your own connection on the <a href=\"/dns-check\">DNS check</a> page. Behind a proxy, the result may differ from what the mail program sees.</p>", reply(&refusal_example(check))) }),
        e("Q3", l.t("POP、SMTPサーバーの名前とポートを知りたい。", "What are the POP and SMTP server names and ports?"),
          if ja { format!("<p>サーバー名は <code>{host}</code> です。用途ごとのポートと暗号化の設定は、ログイン後の <a href=\"/settings\">設定の確認</a> に表示されます。IPアドレスは運用上変わることがあるので、メールソフトにはサーバー名を設定してください。</p>") }
          else { format!("<p>The server name is <code>{host}</code>. The port and encryption of each service are listed on <a href=\"/settings\">My settings</a> after you log in. Addresses may change; set the name, not an IP address, in your mail program.</p>") }),
        e("Q4", l.t("SMTP AUTHとPOP before SMTPの違いと使い方は?", "SMTP AUTH or POP-before-SMTP: what is the difference?"),
          if ja { format!("<p><strong>SMTP AUTH</strong>: 送信のたびにユーザー名とパスワードを送ります。一度設定すれば、あとはいつでも送信できるのでおすすめです。ユーザー名はアカウント名(またはメールアドレス)、パスワードは通常のパスワードか、<a href=\"/settings\">設定の確認</a> で発行できるSMTP AUTH専用パスワードです。{}</p><p><strong>POP before SMTP</strong>: SMTP AUTHに対応していないメールソフト向けです。先にメールを受信すると(新着がなくても構いません)、そのIPアドレスから約{mins}分間送信できます。送信に{mins}分以上かかっても途中で切れることはありません。</p>", if has_auth { "" } else { "(このサーバーでは現在SMTP AUTHの送信サーバーは設定されていません。)" }) }
          else { format!("<p><strong>SMTP AUTH</strong>: your mail program sends a user name and password with each mail. Set it up once and sending always works; we recommend it. The user name is your account name (or address); the password is your account password or the separate SMTP AUTH password you can issue on <a href=\"/settings\">My settings</a>.{}</p><p><strong>POP-before-SMTP</strong>: for mail programs without SMTP AUTH. Check mail first (no new mail needed); your IP address may then send for about {mins} minutes. A transfer that takes longer is not cut off.</p>", if has_auth { "" } else { " (No SMTP AUTH server is configured here at the moment.)" }) }),
        e("Q5", l.t("どのメールソフトで使えますか? アカウント名の代わりにメールアドレスでもよいですか?", "Which mail programs work? May I log in with my address instead of the account name?"),
          if ja { format!("<p>POP3(USER/PASS、APOP)とSMTP AUTH(PLAIN、LOGIN、CRAM-MD5)に対応した一般的なメールソフトで使えます。古いOutlook ExpressやNetscapeが探す形式のAUTHにも対応しています。</p><p>すべてのログインで、アカウント名(例: <code>btm0001</code>)の代わりにメールアドレス(例: <code>btm0001@{domain}</code>)を使えます。EudoraなどSMTP AUTHのユーザー名にメールアドレスを指定するソフトでもそのまま使えます。</p>") }
          else { format!("<p>Any common mail program with POP3 (USER/PASS, APOP) and SMTP AUTH (PLAIN, LOGIN, CRAM-MD5) works, including old Outlook Express and Netscape versions that look for the legacy AUTH= line.</p><p>Every login accepts your mail address (e.g. <code>btm0001@{domain}</code>) in place of the account name (e.g. <code>btm0001</code>), as some programs (Eudora) require for SMTP AUTH.</p>") }),
        e("S1", l.t("送信時: ホスト'smtp…'が見つかりません(ソケット エラー:11001)", "Sending: host 'smtp...' could not be found (socket error 11001)"),
          if ja { format!("<p>送信サーバー名が間違っているか、インターネットに接続していません。送信サーバー名が <code>{host}</code> になっているか、ホームページが開けるかを確認してください。</p>") }
          else { format!("<p>The outgoing server name is misspelled, or you are not online. Check that the outgoing server is <code>{host}</code> and that web pages open.</p>") }),
        e("S2", "550 5.1.1 User unknown",
          if ja { format!("{}<p>宛先のメールアドレスが存在しません。','(カンマ)と'.'(ドット)の打ち間違いや全角文字が入っていないか、送信トレイのメールの宛先を確認してください。</p>", reply(&format!("550 5.1.1 <test@{comma}> User unknown"))) }
          else { format!("{}<p>The recipient address does not exist. Look for a comma typed for a dot, or full-width characters, in the recipient of the mail in your outbox.</p>", reply(&format!("550 5.1.1 <test@{comma}> User unknown"))) }),
        e("S3", "553 5.7.1 Relay operation rejected",
          if ja { format!("{}<p>送信の許可がないため、外部のアドレスへ送れません。SMTP AUTHのサーバーを使う場合は、メールソフトの「送信サーバーは認証が必要」の設定とユーザー名・パスワードを確認してください。POP before SMTPのサーバーを使う場合は、送信の前に受信してください(受信から約{mins}分以内に送信)。{}</p><p><a href=\"#Q4\">送信方式の違い</a></p>", reply("553 5.7.1 <test@example.com> Relay operation rejected"), if no_grant.is_empty() { String::new() } else { format!("受信サーバー {no_grant} での受信ではPOP before SMTPは有効になりませんので、SMTP AUTHをお使いください。") }) }
          else { format!("{}<p>You are not allowed to send to outside addresses yet. With the SMTP AUTH server, check that \"my outgoing server requires authentication\" is on and the user name and password are right. With the POP-before-SMTP server, check mail first and send within about {mins} minutes.{}</p><p><a href=\"#Q4\">SMTP AUTH or POP-before-SMTP</a></p>", reply("553 5.7.1 <test@example.com> Relay operation rejected"), if no_grant.is_empty() { String::new() } else { format!(" Receiving on {no_grant} does not open POP-before-SMTP; use SMTP AUTH.") }) }),
        e("S4", "553 Address contained invalid control characters",
          if ja { format!("{}<p>ご自分のメールアドレス(差出人)に使えない文字(制御文字や全角文字、例えば末尾の「・」)が入っています。メールソフトの「全般」のメールアドレスの設定を確認してください。宛先に入っている場合は <code>553 5.1.3</code> になります。応答では使えない文字は「?」で表示されます(UTF-8の「・」は3バイトなので「???」)。</p>", reply(&format!("553 5.1.7 <test@{domain}???> Address contained invalid control characters"))) }
          else { format!("{}<p>Your own (sender) address contains characters that addresses cannot have: control characters or non-ASCII ones such as a trailing full-width dot. Check the address in your mail program's account settings. For a recipient the code is <code>553 5.1.3</code>. The reply shows each such octet as '?' (a UTF-8 middle dot is three).</p>", reply(&format!("553 5.1.7 <test@{domain}???> Address contained invalid control characters"))) }),
        e("S5", "553 Illegal comma in host name part",
          if ja { format!("{}<p>ご自分のメールアドレスの@より後ろで、'.'(ドット)の代わりに','(カンマ)が入っています。メールアドレスの設定を確認してください。</p>", reply(&format!("553 5.1.7 <test@{comma}> Illegal comma in host name part"))) }
          else { format!("{}<p>Your own address has a comma where a dot belongs after the @. Check the address in your mail program.</p>", reply(&format!("553 5.1.7 <test@{comma}> Illegal comma in host name part"))) }),
        e("J1", l.t("受信時: ホスト'pop…'が見つかりません(ソケット エラー:11001)", "Receiving: host 'pop...' could not be found (socket error 11001)"),
          if ja { format!("<p>受信サーバー名が間違っているか、インターネットに接続していません。受信サーバー名が <code>{host}</code> になっているか、ホームページが開けるかを確認してください。</p>") }
          else { format!("<p>The incoming server name is misspelled, or you are not online. Check that the incoming server is <code>{host}</code> and that web pages open.</p>") }),
        e("J2", "-ERR [AUTH] Password supplied for ... is incorrect",
          if ja { format!("{}<p>アカウント名かパスワードが違います(存在しないアカウント名でも同じ応答です)。メールソフトの設定を確認してください。アカウント名の代わりにメールアドレスでもログインできます。失敗が続くと、そのIPアドレスからの応答が少しずつ遅くなります。</p>", reply("-ERR [AUTH] Password supplied for \"btm0001\" is incorrect")) }
          else { format!("{}<p>The account name or password is wrong (an unknown account name gets the same reply). Check your mail program's settings; your mail address works as the account name too. Repeated failures slow down the answers to your IP address.</p>", reply("-ERR [AUTH] Password supplied for \"btm0001\" is incorrect")) }),
        e("J3", l.t("「セキュリティで保護されたパスワード認証」でログオンできない。", "Cannot log on with \"Secure Password Authentication\" (SPA)."),
          if ja { "<p>「セキュリティで保護されたパスワード認証でログオンする」はMicrosoft独自の方式(NTLM)で、betomailは対応していません。チェックを外してください。パスワードを暗号化したい場合は、SSL/TLS(またはSTARTTLS)を使う設定にしてください。APOPを使うには、事前にサポートへ専用の共有シークレットの設定をご依頼ください。</p>".into() }
          else { "<p>\"Secure Password Authentication\" is Microsoft's own scheme (NTLM), which betomail does not offer. Untick it. To protect your password, use SSL/TLS (or STARTTLS) instead. APOP needs a shared secret that support sets up on request.</p>".into() }),
        e("J4", "-ERR [IN-USE] ... lock busy! Is another session active?",
          if ja { format!("{}<p>受信中は、読み出し中のメールが変わらないようにメールボックスをロックします。別のパソコンやスマートフォンのメールソフトが同時に受信していると、この応答になります。</p><p>以前のシステムでは、受信を強制終了したり回線が切れたりするとロックが約20分残り、再試行するたびに延びていました。betomailでは、メールソフトが受信を終えるか接続が切れた瞬間にロックを解除します。異常終了したサーバーのロックも1分以内に消え、再試行でロックが延びることはありません。他の機器の受信が終わるのを待つか、自動受信の間隔をずらしてください。</p><p>複数の機器で同じアカウントを受信しても、betomailではメールが消えることはありません。</p>", reply("-ERR [IN-USE] btm0001 lock busy! Is another session active?")) }
          else { format!("{}<p>While a mail program reads the mailbox, it is locked so that nothing changes under it. Another computer or phone checking the same account at the same moment gets this reply.</p><p>The old system kept the lock for about 20 minutes after a crashed or cut-off session, and every retry made it longer. betomail frees the lock the moment the mail program finishes or disconnects; a lock left by a failed server lapses within a minute, and retries never extend it. Wait for the other device to finish, or stagger the automatic checks.</p><p>Reading one account from several devices never loses mail with betomail.</p>", reply("-ERR [IN-USE] btm0001 lock busy! Is another session active?")) }),
        e("J5", l.t("特定のメールの受信中にエラーになる・メールソフトが止まる。", "Receiving one particular mail fails or freezes the mail program."),
          if ja { "<p>大きな添付ファイル付きのメールなどで、メールソフトがタイムアウトしたり止まったりすることがあります。そのメールを受信せずに、サーバー上で直接削除してください。ログイン後の <a href=\"/mail\">リモートメール</a> で、差出人・件名・日付・サイズを見て選んで削除できます。</p>".into() }
          else { "<p>A mail with a huge attachment (or an odd one) can make a mail program time out or freeze. Delete it on the server without downloading it: log in and use <a href=\"/mail\">Remote mail</a>, which lists sender, subject, date and size.</p>".into() }),
    ]
}

pub async fn page_handler(ctx: Ctx) -> Response {
    let l = ctx.lang;
    let list = entries(l, &ctx.app().config);
    let toc: String = list
        .iter()
        .map(|e| {
            format!(
                r##"<li><a href="#{id}">{id}</a> {q}</li>"##,
                id = e.id,
                q = esc(&e.question)
            )
        })
        .collect();
    let items: String = list
        .iter()
        .map(|e| {
            format!(
                r##"<section class="card entry" id="{id}"><h2><a href="#{id}">{id}</a> {q}</h2>{a}</section>"##,
                id = e.id,
                q = esc(&e.question),
                a = e.answer
            )
        })
        .collect();
    let title = l.t("よくある質問とエラーメッセージ", "FAQ and error messages");
    let body = format!(
        r#"<h1>{title}</h1><section class="card"><ul class="toc">{toc}</ul></section><div class="faq">{items}</div>"#
    );
    page(&ctx, title, &body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_entry_in_both_languages() {
        let cfg = Config::embedded_default();
        for l in [Lang::Ja, Lang::En] {
            let ids: Vec<_> = entries(l, &cfg).iter().map(|e| e.id).collect();
            for id in [
                "Q1", "Q2", "Q3", "Q4", "Q5", "S1", "S2", "S3", "S4", "S5", "J1", "J2", "J3", "J4",
                "J5",
            ] {
                assert!(ids.contains(&id), "{id} missing");
            }
        }
        let all: String = entries(Lang::En, &cfg)
            .iter()
            .map(|e| e.answer.clone())
            .collect();
        assert!(all.contains("553 5.7.1 &lt;test@example.com&gt; Relay operation rejected"));
        assert!(all.contains("550 5.1.1 &lt;test@be,test&gt; User unknown"));
        assert!(all.contains("-ERR [IN-USE] btm0001 lock busy! Is another session active?"));
        assert!(all.contains("-ERR [SYS/PERM] Connection refused: the reverse DNS name of 198.51.100.7 is dyn-7.isp.example, but that name does not resolve back to 198.51.100.7 (forward and reverse DNS do not match). Check your host at http://127.0.0.1:8080/dns-check"));
    }
}
