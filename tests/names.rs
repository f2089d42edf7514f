//! Names no one else can take: mount-table permissions against hostile
//! pages and processes, ownership across a mount-table restart, servers
//! that must prove who they are, and the default rule of who may call
//! whom. Real daemons and sockets; the hostile party is refused while the
//! owner's calls go on answering.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wspr::error::ids;
use wspr::rpc::{
    AllowAll, CallOptions, Client, ClientConfig, Dispatcher, Invocation, Invoker, Lookup,
    Namespace, Pending, Server, ServerCall, Signature, Step,
};
use wspr::security::{BlessingPattern, Principal};

use common::js::*;
use common::*;

/// `wsprd serve` as a process (with `extra` flags); its HTTP address and
/// name space root.
fn serve(extra: &[&str]) -> (Proc, SocketAddr, String) {
    let mut c = wsprd();
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mounttable-listen",
        "127.0.0.1:0",
        "--log-level",
        "warn",
    ]);
    c.args(extra);
    let p = Proc::spawn(c);
    let addr = p.line().rsplit("http://").next().unwrap().parse().unwrap();
    let root = p.line().rsplit(' ').next().unwrap().to_string();
    (p, addr, root)
}

/// A fresh directory for this test.
fn scratch(what: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("names-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Credentials of a principal the tests' principal blessed as
/// `<tests>/<ext>`: another party of the same family (a colleague), who
/// proves a name the mount table recognizes.
fn colleague(ext: &str) -> (PathBuf, Principal) {
    let dir = scratch(&format!("cred-{ext}"));
    let p = Principal::new_blessed_by(&test_principal(), ext, vec![]).unwrap();
    p.save(&dir).unwrap();
    (dir, p)
}

/// Runs `wsprd ARGS...` to the end; (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = wsprd().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Answers, as the page `js` that serves an adder, one call arriving.
fn answer_add(js: &mut Js) {
    let l = js.recv();
    assert_eq!(l.kind, LOOKUP, "{l:?}");
    js.answer_lookup(l.id, 1, adder_signature(), false);
    let r = js.recv();
    assert_eq!(r.kind, SERVER_REQUEST, "{r:?}");
    let a = &r.message["args"];
    js.send(
        r.id,
        2,
        json!({"results": [a[0].as_i64().unwrap() + a[1].as_i64().unwrap()]}),
    );
}

/// The owner's name still answers: `wsprd call` (the daemon's own
/// principal) adds through it while the owner's page answers.
fn still_answers(owner: &mut Js, root: &str, name: &str) {
    let (root, name) = (root.to_string(), name.to_string());
    let call = std::thread::spawn(move || {
        run(&["call", "--namespace-root", &root, &name, "add", "40", "2"])
    });
    answer_add(owner);
    let (code, out, err) = call.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "[42]");
}

/// A namespace request of a page; the reply.
fn namespace(js: &mut Js, data: Value) -> Msg {
    let id = js.id();
    js.send(id, 13, data);
    let m = js.recv();
    assert_eq!(m.id, id, "{m:?}");
    m
}

fn assert_no_access(m: &Msg, what: &str) {
    assert_eq!(
        (m.kind, m.message["id"].as_str()),
        (ERROR, Some(ids::NO_ACCESS)),
        "{what}: {m:?}"
    );
}

#[test]
fn hostile_pages_and_processes_cannot_take_a_name_and_its_owner_goes_on() {
    let (_d1, addr, root) = serve(&[]);
    let mut owner = Js::connect_with(addr, Some("http://127.0.0.1:1111")).unwrap();
    let endpoint = owner.serve("victim/svc", 0);
    let target = format!("/{endpoint}");
    still_answers(&mut owner, &root, "victim/svc");

    // A page of another origin, through the namespace message.
    let mut page = Js::connect_with(addr, Some("http://127.0.0.1:6666")).unwrap();
    let trap = format!("/{}", page.serve("hostile/trap", 0));
    for (what, data) in [
        (
            "unmount all",
            json!({"method": "unmount", "name": "victim/svc", "server": ""}),
        ),
        (
            "unmount",
            json!({"method": "unmount", "name": "victim/svc", "server": target}),
        ),
        (
            "mount over",
            json!({"method": "mount", "name": "victim/svc", "server": trap, "ttl": 60}),
        ),
        (
            "mount below",
            json!({"method": "mount", "name": "victim/svc/x", "server": trap, "ttl": 60}),
        ),
        (
            "re-permission",
            json!({"method": "setPermissions", "name": "victim/svc",
                   "permissions": {"Admin": ["..."], "Mount": ["..."]}}),
        ),
        (
            "delete",
            json!({"method": "delete", "name": "victim", "deleteSubtree": true}),
        ),
    ] {
        assert_no_access(&namespace(&mut page, data), what);
        still_answers(&mut owner, &root, "victim/svc");
    }
    let id = page.id();
    page.send(id, 1, json!({"name": "victim/svc", "serverId": 1}));
    assert_no_access(&page.recv(), "serve over");
    still_answers(&mut owner, &root, "victim/svc");

    // A process with other credentials (a colleague of the daemon's
    // principal, so the table knows its name), from the command line.
    let (mallory, _) = colleague("mallory");
    let m = mallory.to_str().unwrap();
    let common = ["--credentials", m, "--namespace-root", root.as_str()];
    // (The command's words, then the options.)
    for (what, cmd, args) in [
        ("unmount", vec!["unmount"], vec!["victim/svc"]),
        ("mount", vec!["mount"], vec!["victim/svc", trap.as_str()]),
        (
            "perms set",
            vec!["perms", "set"],
            vec!["victim/svc", r#"{"Mount": ["..."]}"#],
        ),
        ("delete", vec!["delete"], vec!["--subtree", "victim"]),
    ] {
        let mut argv = cmd;
        argv.extend(common);
        argv.extend(args);
        let (code, _, err) = run(&argv);
        assert_eq!(code, Some(1), "{what}: {err}");
        assert!(err.contains("NoAccess"), "{what}: {err}");
        still_answers(&mut owner, &root, "victim/svc");
    }
    // What it may do: read who owns the name, and make names of its own.
    let mut argv = vec!["perms", "get"];
    argv.extend(common);
    argv.push("victim/svc");
    let (code, out, err) = run(&argv);
    assert_eq!(code, Some(0), "{err}");
    let got: Value = serde_json::from_str(out.trim()).unwrap();
    let page_name = format!("{}/http:127.0.0.1:1111", test_principal().names()[0]);
    assert_eq!(got["permissions"]["Admin"], json!([page_name]));
    let mut argv = vec!["mount"];
    argv.extend(common);
    argv.extend(["mallory/own", trap.as_str()]);
    assert_eq!(run(&argv).0, Some(0));

    // A second daemon, run by the hostile process and rooted in the first
    // daemon's mount table: its pages cannot take the name either.
    let (_d2, addr2, _) = serve(&["--credentials", m, "--namespace-root", &root]);
    let mut far = Js::connect(addr2);
    let id = far.id();
    far.send(id, 1, json!({"name": "victim/svc", "serverId": 1}));
    assert_no_access(&far.recv(), "serve over from another daemon");
    assert_no_access(
        &namespace(
            &mut far,
            json!({"method": "unmount", "name": "victim/svc", "server": ""}),
        ),
        "unmount from another daemon",
    );
    far.serve("far/own", 2);
    still_answers(&mut owner, &root, "victim/svc");
    // Nothing ever reached the hostile servers.
    assert_eq!(page.try_recv(Duration::from_millis(100)), None);
    assert_eq!(far.try_recv(Duration::from_millis(100)), None);
    let resolved = test_client(vec![root.clone()])
        .resolve("victim/svc")
        .unwrap();
    assert_eq!(resolved, vec![target]);
}

#[test]
fn a_mount_table_restart_keeps_every_owner() {
    let state = scratch("state");
    let table = |state: &Path| {
        let mut c = wsprd();
        c.args([
            "mounttable",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.to_str().unwrap(),
        ]);
        let p = Proc::spawn(c);
        let name = p.line();
        (p, name)
    };
    let (mut first, root) = table(&state);
    let owner = test_client(vec![root.clone()]);
    let demo = Server::listen("127.0.0.1:0", Arc::new(wspr::demo::Demo), owner.clone()).unwrap();
    demo.add_name("kept/adder").unwrap();
    let (mallory, _) = colleague("mallory-restart");
    // (`cmd` is the command's words; the options follow them.)
    let hostile = |root: &str, cmd: &[&str], args: &[&str]| {
        let mut argv = cmd.to_vec();
        argv.extend(["--credentials", mallory.to_str().unwrap()]);
        argv.extend(["--namespace-root", root]);
        argv.extend(args);
        run(&argv)
    };
    let refused = |out: (Option<i32>, String, String)| {
        assert_eq!(out.0, Some(1), "{}", out.2);
        assert!(out.2.contains("NoAccess"), "{}", out.2);
    };
    refused(hostile(&root, &["mount"], &["kept/adder", &demo.name()]));

    // The table dies without warning and comes back (elsewhere) from its
    // state directory. Nothing is mounted yet: the hostile process tries
    // first, and the name is still not its to take.
    first.signal("-KILL");
    first.wait();
    let (_second, root2) = table(&state);
    refused(hostile(&root2, &["mount"], &["kept/adder", &demo.name()]));
    refused(hostile(&root2, &["perms", "set"], &["kept/adder", "{}"]));
    refused(hostile(&root2, &["delete"], &["--subtree", "kept"]));
    // Free names are anyone's.
    let made = hostile(&root2, &["mount"], &["free/x", &demo.name()]);
    assert_eq!(made.0, Some(0), "{}", made.2);
    // The owner mounts again, and calls through it answer.
    let owner2 = test_client(vec![root2.clone()]);
    owner2
        .mount("kept/adder", &demo.name(), Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        owner2
            .call(
                "kept/adder",
                "Add",
                vec![json!(2), json!(3)],
                CallOptions::default()
            )
            .unwrap(),
        vec![json!(5)]
    );
    let (perms, _) = owner2.get_permissions("kept/adder").unwrap();
    let admin = perms.get(wspr::security::access::Tag::Admin).unwrap();
    assert!(admin.includes(&test_principal().names()));
    assert!(state.join(wspr::mounttable::PERMISSIONS_FILE).exists());
    let _ = std::fs::remove_dir_all(&state);
}

/// A server that counts every lookup: an impostor must never see one.
struct Counting(Arc<AtomicU64>);

impl Dispatcher for Counting {
    fn lookup(&self, call: Pending) -> Step<Pending> {
        call.blocking(|_call| {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Lookup {
                invoker: Arc::new(Impostor),
                authorizer: Some(Arc::new(AllowAll)),
            })
        })
    }
}

struct Impostor;

impl Invoker for Impostor {
    fn invoke(&self, call: Invocation) -> Step<Invocation> {
        call.blocking(|_, _| Ok(vec![json!(1042)]))
    }
    fn signature(&self, _call: &ServerCall) -> wspr::Result<Signature> {
        Ok(Signature::new())
    }
}

/// Forwards every connection to `to`.
fn proxy(to: SocketAddr) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for a in l.incoming().flatten() {
            let Ok(b) = TcpStream::connect(to) else {
                return;
            };
            let pump = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            };
            pump(a.try_clone().unwrap(), b.try_clone().unwrap());
            pump(b, a);
        }
    });
    addr
}

/// Sockets only: the in-process link is not the path under test here.
fn tcp_client(roots: Vec<String>, p: Arc<Principal>) -> Client {
    let mut config = ClientConfig::default();
    config.in_process = false;
    Client::with_principal(Namespace::new(roots), p, config)
}

/// A name made below another party's mounted name, at any depth, would
/// take calls meant for that server (resolution picks the longest mounted
/// prefix): refused, also while the server is away (restarting), and the
/// owner's name goes on resolving to the owner's server.
#[test]
fn no_one_makes_a_name_below_another_partys_mounted_name_even_while_it_is_away() {
    let (_mt, table) = mount_table();
    let roots = table.namespace().roots();
    // Two parties the table knows, neither of them its Admin.
    let party = |ext: &str| {
        tcp_client(
            roots.clone(),
            Arc::new(Principal::new_blessed_by(&test_principal(), ext, vec![]).unwrap()),
        )
    };
    let (alice, mallory) = (party("alice"), party("mallory"));
    let ttl = Duration::from_secs(60);
    let shop = Server::listen("127.0.0.1:0", Arc::new(wspr::demo::Demo), alice.clone()).unwrap();
    // Alice's shop, with a till mounted deeper ("shop/till" is hers and
    // has nothing mounted itself).
    alice.mount("shop/till/c", &shop.name(), ttl).unwrap();
    alice.mount("shop", &shop.name(), ttl).unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let trap = Server::listen(
        "127.0.0.1:0",
        Arc::new(Counting(seen.clone())),
        mallory.clone(),
    )
    .unwrap();
    let resolves_to_alice = || {
        assert_eq!(
            alice.resolve("shop/till/x").unwrap(),
            vec![format!("{}/till/x", shop.name())]
        );
        assert_eq!(
            alice
                .call(
                    "shop",
                    "Add",
                    vec![json!(2), json!(3)],
                    CallOptions::default()
                )
                .unwrap(),
            vec![json!(5)]
        );
    };
    resolves_to_alice();
    for name in ["shop/till/x", "shop/x"] {
        let err = mallory.mount(name, &trap.name(), ttl).unwrap_err();
        assert_eq!(err.id(), ids::NO_ACCESS, "{name}: {err}");
        resolves_to_alice();
    }
    // Her server away (restarting): its name is still hers, and so is
    // what is below it.
    alice.unmount("shop", "").unwrap();
    let err = mallory.mount("shop/x", &trap.name(), ttl).unwrap_err();
    assert_eq!(err.id(), ids::NO_ACCESS, "{err}");
    alice.mount("shop", &shop.name(), ttl).unwrap();
    resolves_to_alice();
    // Names of its own, and below them, are Mallory's to make.
    mallory.mount("mallory/own", &trap.name(), ttl).unwrap();
    mallory.mount("mallory/own/x", &trap.name(), ttl).unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 0, "no call reached the trap");
}

#[test]
fn a_server_that_is_not_who_the_name_space_recorded_gets_nothing() {
    let (_mt, owner) = mount_table();
    let root = owner.namespace().roots();
    // The owner's adder, mounted as "svc": the table records the names the
    // owner proves.
    let demo = Server::listen("127.0.0.1:0", Arc::new(wspr::demo::Demo), owner.clone()).unwrap();
    demo.add_name("svc").unwrap();
    let caller = tcp_client(root.clone(), test_principal());
    let add = |c: &Client, name: &str, opts: CallOptions| {
        c.call(name, "Add", vec![json!(40), json!(2)], opts)
    };
    assert_eq!(
        add(&caller, "svc", CallOptions::default()).unwrap(),
        vec![json!(42)]
    );

    // Someone in the middle: "mitm" is mounted (by the owner, who thinks
    // it its server) at an address that leads to an impostor with its own
    // key, self-blessed with the owner's very name.
    let seen = Arc::new(AtomicU64::new(0));
    let impostor_key = Arc::new(Principal::new_self_blessed(&test_principal().names()[0]).unwrap());
    let impostor = Server::listen(
        "127.0.0.1:0",
        Arc::new(Counting(seen.clone())),
        tcp_client(vec![], impostor_key),
    )
    .unwrap();
    let via = proxy(impostor.listener().local_addr());
    let mitm = format!("/@w1@{via}@{:016x}@s@@", impostor.endpoint().routing_id());
    owner.mount("mitm", &mitm, Duration::from_secs(60)).unwrap();
    let err = add(&caller, "mitm", CallOptions::default()).unwrap_err();
    assert_eq!(err.id(), ids::NO_ACCESS, "{err}");
    assert!(err.msg().contains("nothing was sent"), "{err}");
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the impostor saw no call");
    // By its endpoint (no record), it must still prove a name the caller
    // recognizes: it does not.
    let err = add(&caller, &mitm, CallOptions::default()).unwrap_err();
    assert_eq!(err.id(), ids::NO_ACCESS, "{err}");
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    // The owner's own calls are unaffected.
    assert_eq!(
        add(&caller, "svc", CallOptions::default()).unwrap(),
        vec![json!(42)]
    );
}

#[test]
fn a_caller_pinning_a_blessing_the_server_lacks_is_refused() {
    let (_mt, owner) = mount_table();
    let roots = owner.namespace().roots();
    let seen = Arc::new(AtomicU64::new(0));
    let server = Server::listen(
        "127.0.0.1:0",
        Arc::new(Counting(seen.clone())),
        owner.clone(),
    )
    .unwrap();
    server.add_name("pinned").unwrap();
    let me = test_principal().names()[0].clone();
    let pin = |p: &str| {
        CallOptions::default().with_server_blessings(vec![BlessingPattern::new(p).unwrap()])
    };
    // Over sockets and through the in-process link alike.
    for client in [
        tcp_client(roots.clone(), test_principal()),
        test_client(roots.clone()),
    ] {
        let before = seen.load(Ordering::SeqCst);
        let err = client
            .call("pinned", "Get", vec![], pin("someone/else/..."))
            .unwrap_err();
        assert_eq!(err.id(), ids::NO_ACCESS, "{err}");
        assert!(err.msg().contains("someone/else/..."), "{err}");
        assert!(err.msg().contains(&me), "the names proven are shown: {err}");
        assert_eq!(
            seen.load(Ordering::SeqCst),
            before,
            "nothing reached the server"
        );
        assert_eq!(
            client.call("pinned", "Get", vec![], pin(&me)).unwrap(),
            vec![json!(1042)]
        );
    }
    assert_eq!(seen.load(Ordering::SeqCst), 2);

    // From the command line.
    let mut c = wsprd();
    c.args(["demo", "--namespace-root", &roots[0], "--name", "cli/adder"]);
    let demo = Proc::spawn(c);
    demo.line();
    let call = |pattern: &str| {
        run(&[
            "call",
            "--namespace-root",
            &roots[0],
            "--server-blessing",
            pattern,
            "cli/adder",
            "Add",
            "1",
            "2",
        ])
    };
    let (code, _, err) = call("nobody/...");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("NoAccess") && err.contains("nobody/..."),
        "{err}"
    );
    let (code, out, err) = call(&format!("{me}/..."));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "[3]");
}

/// Serves "tt/adder" from a page of `origin` on `d`, answering every call
/// until the returned sender is dropped.
fn serving_page(addr: SocketAddr, origin: &str) -> crossbeam_channel::Sender<()> {
    let mut js = Js::connect_with(addr, Some(origin)).unwrap();
    js.serve("tt/adder", 0);
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    std::thread::spawn(move || {
        while stopped.try_recv() != Err(crossbeam_channel::TryRecvError::Disconnected) {
            let Some(m) = js.try_recv(Duration::from_millis(20)) else {
                continue;
            };
            match m.kind {
                LOOKUP => js.answer_lookup(m.id, 1, adder_signature(), false),
                SERVER_REQUEST => js.send(m.id, 2, json!({"results": [3]})),
                _ => {}
            }
        }
    });
    stop
}

/// Whether a call of "tt/adder" from a page of `origin` is allowed.
fn page_calls(addr: SocketAddr, origin: &str) -> bool {
    let mut js = Js::connect_with(addr, Some(origin)).unwrap();
    let id = js.call("tt/adder", "add", json!([1, 2]), false);
    let m = js.recv();
    assert_eq!(m.id, id);
    match m.kind {
        FINAL => true,
        ERROR if m.message["id"] == ids::NO_ACCESS => false,
        _ => panic!("{m:?}"),
    }
}

/// Whether a native call of "tt/adder" as `p` (over a socket) is allowed.
fn native_calls(roots: Vec<String>, p: Arc<Principal>) -> bool {
    match tcp_client(roots, p).call(
        "tt/adder",
        "Add",
        vec![json!(1), json!(2)],
        CallOptions::timeout(Duration::from_secs(20)),
    ) {
        Ok(r) => {
            assert_eq!(r, vec![json!(3)]);
            true
        }
        Err(e) if e.is(ids::NO_ACCESS) => false,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn who_may_call_a_page_by_default_the_delegation_truth_table() {
    let a = "http://127.0.0.1:1111";
    let row = |open: bool| -> Vec<bool> {
        let d = daemon(|c| c.open_access = open);
        let addr = d.http_addr();
        let roots = d.namespace_roots();
        let _serving = serving_page(addr, a);
        let page_a =
            Principal::new_blessed_by(d.principal(), "http:127.0.0.1:1111", vec![]).unwrap();
        let mut stranger = Principal::new_self_blessed("stranger").unwrap();
        stranger
            .trust_root_of(&d.principal().blessings()[0])
            .unwrap();
        let other_family = Principal::new_blessed_by(d.principal(), "colleague", vec![]).unwrap();
        vec![
            // Another page of the same origin.
            page_calls(addr, a),
            // A page of another origin.
            page_calls(addr, "http://127.0.0.1:2222"),
            // The daemon's own principal (its tools).
            native_calls(roots.clone(), d.principal().clone()),
            // A delegate of the page (its name extends the page's).
            native_calls(
                roots.clone(),
                Arc::new(Principal::new_blessed_by(&page_a, "helper", vec![]).unwrap()),
            ),
            // Another principal of the daemon's family, not the page's.
            native_calls(roots.clone(), Arc::new(other_family)),
            // A principal the daemon does not know.
            native_calls(roots.clone(), Arc::new(stranger)),
        ]
    };
    //                      same origin, other origin, daemon, page's delegate, colleague, stranger
    assert_eq!(row(false), vec![true, false, true, true, false, false]);
    assert_eq!(
        row(true),
        vec![true, true, true, true, true, true],
        "--open-access"
    );
}
