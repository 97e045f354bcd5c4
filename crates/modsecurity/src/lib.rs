//! A thin binding of libmodsecurity's (ModSecurity v3) C API: load a rule set from
//! configuration text, evaluate requests against it. The one crate of Gatehouse with
//! unsafe code; it knows nothing of HTTP libraries, tables or policies.
//!
//! The library is opened at run time (`libmodsecurity.so.3`, with `dlopen`) the first
//! time a rule set is loaded: programs using this crate build and run without it, and
//! only those that load rules need it. When it is missing, [`RuleSet::load`] says what
//! to install.
//!
//! A [`RuleSet`] is parsed once and shared by every thread: transactions only read it.
//! [`RuleSet::evaluate`] runs one transaction: connection, URI, headers, body, then
//! reads the intervention. The engine logs each matching rule through a callback into
//! the transaction's own collector; only rule ids and the matched variable's name are
//! kept, never the value.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::OnceLock;

/// The shared library opened.
pub const LIBRARY: &str = "libmodsecurity.so.3";

#[repr(C)]
struct Intervention {
    status: c_int,
    pause: c_int,
    url: *mut c_char,
    log: *mut c_char,
    disruptive: c_int,
}

type LogCallback = unsafe extern "C" fn(*mut c_void, *const c_void);

/// The C functions used, resolved once.
struct Api {
    init: unsafe extern "C" fn() -> *mut c_void,
    set_connector_info: unsafe extern "C" fn(*mut c_void, *const c_char),
    set_log_cb: unsafe extern "C" fn(*mut c_void, LogCallback),
    create_rules_set: unsafe extern "C" fn() -> *mut c_void,
    rules_add: unsafe extern "C" fn(*mut c_void, *const c_char, *mut *const c_char) -> c_int,
    rules_cleanup: unsafe extern "C" fn(*mut c_void) -> c_int,
    new_transaction_with_id:
        unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_char, *mut c_void) -> *mut c_void,
    process_connection:
        unsafe extern "C" fn(*mut c_void, *const c_char, c_int, *const c_char, c_int) -> c_int,
    process_uri:
        unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, *const c_char) -> c_int,
    add_n_request_header:
        unsafe extern "C" fn(*mut c_void, *const u8, usize, *const u8, usize) -> c_int,
    process_request_headers: unsafe extern "C" fn(*mut c_void) -> c_int,
    append_request_body: unsafe extern "C" fn(*mut c_void, *const u8, usize) -> c_int,
    process_request_body: unsafe extern "C" fn(*mut c_void) -> c_int,
    intervention: unsafe extern "C" fn(*mut c_void, *mut Intervention) -> c_int,
    transaction_cleanup: unsafe extern "C" fn(*mut c_void),
}

/// The library and its one `ModSecurity` instance, for the life of the process.
struct Engine {
    api: Api,
    msc: *mut c_void,
    /// Kept open: the functions above point into it.
    _library: libloading::Library,
}

// SAFETY: the `ModSecurity` instance is configured once, in `open`, and only read
// afterwards (transactions take it as their context); libmodsecurity serves concurrent
// transactions of one instance, as its threaded servers' connectors rely on.
unsafe impl Send for Engine {}
// SAFETY: as above.
unsafe impl Sync for Engine {}

unsafe extern "C" {
    /// The C library's `free`, for the strings libmodsecurity allocates for us.
    fn free(p: *mut c_void);
}

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

fn engine() -> Result<&'static Engine, String> {
    ENGINE.get_or_init(open).as_ref().map_err(Clone::clone)
}

/// Whether libmodsecurity can be opened on this machine.
pub fn available() -> Result<(), String> {
    engine().map(|_| ())
}

fn open() -> Result<Engine, String> {
    // SAFETY: loading libmodsecurity runs its initialisers, which only set up the
    // library's own state.
    let library = unsafe { libloading::Library::new(LIBRARY) }.map_err(|e| {
        format!(
            "libmodsecurity is not installed ({LIBRARY}: {e}); install the libmodsecurity3 package"
        )
    })?;
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the symbol's type is the one modsecurity 3.0's header declares.
            *unsafe { library.get(concat!($name, "\0").as_bytes()) }
                .map_err(|e| format!("{LIBRARY} has no {}: {e}", $name))?
        };
    }
    let api = Api {
        init: sym!("msc_init"),
        set_connector_info: sym!("msc_set_connector_info"),
        set_log_cb: sym!("msc_set_log_cb"),
        create_rules_set: sym!("msc_create_rules_set"),
        rules_add: sym!("msc_rules_add"),
        rules_cleanup: sym!("msc_rules_cleanup"),
        new_transaction_with_id: sym!("msc_new_transaction_with_id"),
        process_connection: sym!("msc_process_connection"),
        process_uri: sym!("msc_process_uri"),
        add_n_request_header: sym!("msc_add_n_request_header"),
        process_request_headers: sym!("msc_process_request_headers"),
        append_request_body: sym!("msc_append_request_body"),
        process_request_body: sym!("msc_process_request_body"),
        intervention: sym!("msc_intervention"),
        transaction_cleanup: sym!("msc_transaction_cleanup"),
    };
    // SAFETY: a plain constructor; a null return is handled.
    let msc = unsafe { (api.init)() };
    if msc.is_null() {
        return Err("libmodsecurity could not start (msc_init)".into());
    }
    let connector = CString::new(concat!("gatehouse ", env!("CARGO_PKG_VERSION")))
        .map_err(|e| e.to_string())?;
    // SAFETY: `msc` is live; the connector string is copied by the callee.
    unsafe {
        (api.set_connector_info)(msc, connector.as_ptr());
        (api.set_log_cb)(msc, on_log);
    }
    Ok(Engine {
        api,
        msc,
        _library: library,
    })
}

/// What one transaction's rules logged.
#[derive(Debug, Default)]
struct Collector {
    /// Ids of the rules that matched, in order.
    ids: Vec<u32>,
    /// The variable the last detection rule matched (`ARGS:q`): the rule files run
    /// from protocol checks to attack classes, so the last is the most specific.
    variable: Option<String>,
}

/// At most this many characters of a variable name are kept.
const VARIABLE_CHARS: usize = 64;

/// libmodsecurity's log callback: `data` is the transaction's [`Collector`], `message`
/// a C string (`... against variable `ARGS:q' (Value: ...) ... [id "942100"] ...`).
unsafe extern "C" fn on_log(data: *mut c_void, message: *const c_void) {
    if data.is_null() || message.is_null() {
        return;
    }
    // SAFETY: `data` is the `Collector` `evaluate` passed for this transaction, alive
    // and not otherwise borrowed while the engine runs it on this thread; `message` is a
    // NUL-terminated string (the text log property).
    let (collector, text) = unsafe {
        (
            &mut *data.cast::<Collector>(),
            CStr::from_ptr(message.cast::<c_char>()).to_bytes(),
        )
    };
    collector.record(&String::from_utf8_lossy(text));
}

impl Collector {
    /// Takes the rule id and the variable from one log line.
    fn record(&mut self, text: &str) {
        if let Some(id) = between(text, "[id \"", "\"").and_then(|s| s.parse().ok()) {
            self.ids.push(id);
        }
        // `... against variable `ARGS:q' (Value: ...`, or the CRS's own log data:
        // `[data "Matched Data: ... found within ARGS:q: ..."]`.
        let variable = between(text, "against variable `", "'")
            .or_else(|| between(text, " found within ", ": "));
        if !text.contains("Anomaly Score Exceeded")
            && let Some(v) = variable
        {
            self.variable = Some(v.chars().take(VARIABLE_CHARS).collect());
        }
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// A loaded rule set.
pub struct RuleSet {
    engine: &'static Engine,
    rules: *mut c_void,
}

// SAFETY: a rules set is only read once loaded (each transaction evaluates it), and
// freed once, in `drop`, when no transaction can use it any more (they borrow it).
unsafe impl Send for RuleSet {}
// SAFETY: as above.
unsafe impl Sync for RuleSet {}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet").finish_non_exhaustive()
    }
}

impl Drop for RuleSet {
    fn drop(&mut self) {
        // SAFETY: `rules` came from `msc_create_rules_set` and is freed once.
        unsafe { (self.engine.api.rules_cleanup)(self.rules) };
    }
}

/// A request, as the engine is given it.
#[derive(Debug)]
pub struct Request<'a> {
    /// The client's address, as text.
    pub client: &'a str,
    /// The client's port.
    pub client_port: u16,
    /// The request target (path and query), as received.
    pub uri: &'a str,
    /// The method.
    pub method: &'a str,
    /// `1.1` or `2.0`.
    pub http_version: &'a str,
    /// Header names and values.
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    /// The body, or what of it is inspected.
    pub body: Option<&'a [u8]>,
}

/// The engine's verdict.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No rule asked to interrupt the request.
    Pass,
    /// A rule did (`deny`, ...).
    Intervene {
        /// The ids of the rules that logged a match, in order.
        rules: Vec<u32>,
        /// The variable the last of them matched (`ARGS:q`), when the engine said.
        variable: Option<String>,
    },
}

impl RuleSet {
    /// Loads a rule set from configuration text (directives, `Include`s).
    pub fn load(configuration: &str) -> Result<RuleSet, String> {
        let engine = engine()?;
        let text = CString::new(configuration)
            .map_err(|_| "a NUL byte in the rule configuration".to_string())?;
        // SAFETY: a plain constructor; a null return is handled.
        let rules = unsafe { (engine.api.create_rules_set)() };
        if rules.is_null() {
            return Err("libmodsecurity could not create a rule set".into());
        }
        let set = RuleSet { engine, rules };
        let mut error: *const c_char = std::ptr::null();
        // SAFETY: `rules` is live, `text` NUL-terminated; `error` receives a string the
        // library allocated (or stays null), freed below.
        let added = unsafe { (engine.api.rules_add)(rules, text.as_ptr(), &mut error) };
        if added < 0 {
            let message = if error.is_null() {
                "unknown error".to_string()
            } else {
                // SAFETY: a NUL-terminated string from the library, read then freed once.
                unsafe {
                    let m = CStr::from_ptr(error).to_string_lossy().trim().to_string();
                    free(error.cast_mut().cast());
                    m
                }
            };
            return Err(message);
        }
        Ok(set)
    }

    /// Evaluates one request. A transaction the library cannot start passes.
    pub fn evaluate(&self, req: &Request<'_>) -> Verdict {
        let api = &self.engine.api;
        let mut collector = Collector::default();
        let cstr = |s: &str| CString::new(s).unwrap_or_default();
        let (client, uri, method, version) = (
            cstr(req.client),
            cstr(req.uri),
            cstr(req.method),
            cstr(req.http_version),
        );
        let server = c"0.0.0.0";
        let disrupted = {
            let Some(tx) = Transaction::new(self, &mut collector) else {
                return Verdict::Pass;
            };
            // SAFETY: `tx.0` is a live transaction of this rule set; every pointer
            // passed is valid for the call (the library copies what it keeps).
            unsafe {
                (api.process_connection)(
                    tx.0,
                    client.as_ptr(),
                    c_int::from(req.client_port),
                    server.as_ptr(),
                    0,
                );
                (api.process_uri)(tx.0, uri.as_ptr(), method.as_ptr(), version.as_ptr());
                for (name, value) in &req.headers {
                    (api.add_n_request_header)(
                        tx.0,
                        name.as_ptr(),
                        name.len(),
                        value.as_ptr(),
                        value.len(),
                    );
                }
                (api.process_request_headers)(tx.0);
                let mut disrupted = tx.intervened();
                if disrupted.is_none() {
                    if let Some(body) = req.body {
                        (api.append_request_body)(tx.0, body.as_ptr(), body.len());
                    }
                    (api.process_request_body)(tx.0);
                    disrupted = tx.intervened();
                }
                disrupted
            }
        };
        let Some(log) = disrupted else {
            return Verdict::Pass;
        };
        // The rule that intervened logs through the intervention, not the callback.
        collector.record(&log);
        Verdict::Intervene {
            rules: collector.ids,
            variable: collector.variable,
        }
    }
}

/// One ModSecurity transaction, cleaned up on drop.
struct Transaction<'a>(*mut c_void, &'a RuleSet);

impl<'a> Transaction<'a> {
    fn new(set: &'a RuleSet, collector: &mut Collector) -> Option<Transaction<'a>> {
        // A fixed id: the library would otherwise make one per transaction (a clock
        // read and a random string), and nothing here reads it.
        let mut id = *b"gatehouse\0";
        // SAFETY: `msc` and `rules` are live; `collector` outlives the transaction
        // (the caller drops the transaction before reading it); the id is copied.
        let tx = unsafe {
            (set.engine.api.new_transaction_with_id)(
                set.engine.msc,
                set.rules,
                id.as_mut_ptr().cast(),
                std::ptr::from_mut(collector).cast(),
            )
        };
        (!tx.is_null()).then_some(Transaction(tx, set))
    }

    /// The log line of the disruptive intervention (deny, drop, ...) the rules so far
    /// call for, if any.
    fn intervened(&self) -> Option<String> {
        let mut it = Intervention {
            status: 200,
            pause: 0,
            url: std::ptr::null_mut(),
            log: std::ptr::null_mut(),
            disruptive: 0,
        };
        // SAFETY: `self.0` is live; the strings the library may allocate into `it` are
        // freed here, once.
        unsafe {
            let asked = (self.1.engine.api.intervention)(self.0, &mut it);
            if !it.url.is_null() {
                free(it.url.cast());
            }
            let log = if it.log.is_null() {
                String::new()
            } else {
                let log = CStr::from_ptr(it.log).to_string_lossy().into_owned();
                free(it.log.cast());
                log
            };
            (asked != 0 && it.disruptive != 0).then_some(log)
        }
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        // SAFETY: created by `msc_new_transaction_with_id`, cleaned up once.
        unsafe { (self.1.engine.api.transaction_cleanup)(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_give_the_rule_and_the_variable_not_the_value() {
        let mut c = Collector::default();
        let line = c"ModSecurity: Warning. detected SQLi using libinjection. Matched \"Operator `DetectSQLi' with parameter `' against variable `ARGS:q' (Value: `1' or '1'='1' ) [file \"x.conf\"] [line \"1\"] [id \"942100\"] [msg \"SQL Injection Attack Detected via libinjection\"]";
        // SAFETY: a collector and a C string, as the library passes them.
        unsafe { on_log(std::ptr::from_mut(&mut c).cast(), line.as_ptr().cast()) };
        assert_eq!(c.ids, [942100]);
        assert_eq!(c.variable.as_deref(), Some("ARGS:q"));
    }

    /// Needs libmodsecurity: skipped without it, unless `GATEHOUSE_REQUIRE_MODSECURITY`
    /// is set (CI sets it, after installing the library).
    #[test]
    fn a_rule_set_loads_denies_and_reports_bad_rules() {
        if let Err(e) = available() {
            assert!(
                std::env::var_os("GATEHOUSE_REQUIRE_MODSECURITY").is_none(),
                "{e}"
            );
            eprintln!("skipped: {e}");
            return;
        }
        let set = RuleSet::load(
            "SecRuleEngine On\n\
             SecRule ARGS:w \"@contains odd\" \"id:2,phase:1,pass,log\"\n\
             SecRule ARGS:q \"@contains attack\" \"id:1,phase:1,deny,status:403,log\"\n",
        )
        .expect("loads");
        let req = |uri| Request {
            client: "192.0.2.1",
            client_port: 1234,
            uri,
            method: "GET",
            http_version: "1.1",
            headers: vec![(b"Host", b"example.com")],
            body: None,
        };
        assert_eq!(set.evaluate(&req("/?q=fine")), Verdict::Pass);
        assert_eq!(set.evaluate(&req("/?w=odd")), Verdict::Pass);
        match set.evaluate(&req("/?w=odd&q=attack")) {
            Verdict::Intervene { rules, variable } => {
                assert_eq!(rules, [2, 1]);
                assert_eq!(variable.as_deref(), Some("ARGS:q"));
            }
            Verdict::Pass => panic!("not denied"),
        }
        let e = RuleSet::load("SecNoSuchDirective On\n").expect_err("refused");
        assert!(!e.is_empty());
    }
}
