//! [`Service`]: an object served from closures with typed arguments, its
//! signature derived from them. Built on the public [`Dispatcher`] and
//! [`Invoker`] traits, as any object of one's own would be.
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use wspr::rpc::{CallOptions, Client, Namespace, Server, Service, Stream};
//!
//! let calc = Service::new()
//!     .method("Add", |a: i64, b: i64| Ok(a + b))
//!     .method("Greet", |name: String| Ok(format!("hello, {name}")))
//!     .streaming("Sum", |s: &mut Stream<i64, i64>| {
//!         let mut total = 0;
//!         while let Some(n) = s.recv()? {
//!             total += n;
//!             s.send(&total)?;
//!         }
//!         Ok(total)
//!     });
//! let client = Client::new(Namespace::new(vec![]))?;
//! let server = Server::listen("127.0.0.1:0", Arc::new(calc), client.clone())?;
//! let sum = client.call(&server.name(), "Add", vec![json!(2), json!(3)], CallOptions::default())?;
//! assert_eq!(sum, vec![json!(5)]);
//! // Arguments are checked against the closure's types.
//! let e = client
//!     .call(&server.name(), "Add", vec![json!("two"), json!(3)], CallOptions::default())
//!     .unwrap_err();
//! assert_eq!(e.kind(), wspr::ErrorKind::BadArg);
//! # Ok::<(), wspr::Error>(())
//! ```

use std::any::TypeId;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::rpc::{
    Authorizer, Dispatcher, Invocation, Invoker, Lookup, MethodSignature, Pending, ServerCall,
    Signature, Step,
};

/// Runs a method: its name, its arguments, the call; its results.
type Run = dyn Fn(&str, Vec<Value>, &mut ServerCall) -> Result<Vec<Value>> + Send + Sync;

/// One method: how to run it, and its arity (checked before it runs).
struct Method {
    arity: usize,
    run: Box<Run>,
}

/// The methods of the object and its signature.
#[derive(Clone, Default)]
struct Object {
    methods: HashMap<String, Arc<Method>>,
    signature: Signature,
}

/// An object served from closures: each method's arguments are decoded
/// from JSON into the closure's parameter types (serde), its result
/// encoded back, and its signature (the number of arguments, whether it
/// returns a value, whether it streams) derived from the closure. Serve it
/// as any [`Dispatcher`]: [`Server::listen`](crate::rpc::Server::listen),
/// [`Listener::serve`](crate::rpc::Listener::serve), or a daemon's
/// `serve`.
///
/// - Method names are UpperCamelCase on the wire; a name given as `add`
///   is served as `Add` (JavaScript calls it `add`).
/// - A call with the wrong number of arguments, or an argument that does
///   not decode into the parameter's type, is refused with `BadArg`
///   before the closure runs; an unknown method is `NoExist`.
/// - A closure that returns `()` has no results (`numOutArgs` 1); any
///   other type is one result (`numOutArgs` 2: a tuple is one JSON array).
/// - The closures run on the server's call threads, and may block (they
///   should honour the call's deadline: [`Stream::call`] and
///   [`ServerCall::deadline`] tell it). A closure that panics fails its
///   call with `Internal`.
/// - The object answers at its server's name itself (an empty suffix);
///   names below it are `NoExist`.
/// - Who may call: the server's default policy
///   ([`ServerConfig::default_authorizer`](crate::rpc::ServerConfig::default_authorizer),
///   by default the [`Delegation`](crate::security::Delegation) rule), or
///   the one [`Service::authorizer`] gives.
#[derive(Clone, Default)]
#[must_use = "a service does nothing until served"]
pub struct Service {
    object: Arc<Object>,
    authorizer: Option<Arc<dyn Authorizer>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("signature", &self.object.signature)
            .field("own_authorizer", &self.authorizer.is_some())
            .finish()
    }
}

impl Service {
    /// An object with no methods yet.
    pub fn new() -> Service {
        Service::default()
    }

    /// Adds the method `name`, run by `f`: a closure of up to six
    /// arguments, each of a type serde decodes, returning
    /// `Result<T>` where `T` is a type serde encodes (or `()`).
    ///
    /// ```
    /// # use wspr::rpc::Service;
    /// let s = Service::new()
    ///     .method("Add", |a: i64, b: i64| Ok(a + b))
    ///     .method("Reset", || Ok(()));
    /// assert_eq!(s.signature()["Add"].in_args, vec!["arg1", "arg2"]);
    /// assert_eq!(s.signature()["Reset"].num_out_args, 1);
    /// ```
    pub fn method<Args, H: Handler<Args>>(self, name: &str, f: H) -> Service {
        let arity = H::ARITY;
        let returns = f.returns();
        self.typed(name, arity, returns, false, move |method, args, _call| {
            f.run(method, args)
        })
    }

    /// Adds the method `name`, run by `f`, which is also given the call
    /// (first): who is calling ([`ServerCall::remote_names`]), its
    /// deadline, whether it was cancelled.
    ///
    /// ```
    /// # use wspr::rpc::{Service, ServerCall};
    /// let s = Service::new().method_with_call("Whoami", |call: &ServerCall| {
    ///     Ok(call.remote_names().to_vec())
    /// });
    /// assert!(s.signature()["Whoami"].in_args.is_empty());
    /// ```
    pub fn method_with_call<Args, H: CallHandler<Args>>(self, name: &str, f: H) -> Service {
        let arity = H::ARITY;
        let returns = f.returns();
        self.typed(name, arity, returns, false, move |method, args, call| {
            f.run(method, args, call)
        })
    }

    /// Adds the streaming method `name`, run by `f`, which is given the
    /// call's two streams (first) as a [`Stream`] of the item types its
    /// parameter names: items the caller sends, decoded, and items it
    /// sends back, encoded.
    ///
    /// ```
    /// # use wspr::rpc::{Service, Stream};
    /// let s = Service::new().streaming("Countdown", |s: &mut Stream<(), u32>, from: u32| {
    ///     for n in (0..=from).rev() {
    ///         s.send(&n)?;
    ///     }
    ///     Ok(())
    /// });
    /// assert!(s.signature()["Countdown"].is_streaming);
    /// ```
    pub fn streaming<In, Out, Args, H: StreamHandler<In, Out, Args>>(
        self,
        name: &str,
        f: H,
    ) -> Service {
        let arity = H::ARITY;
        let returns = f.returns();
        self.typed(name, arity, returns, true, move |method, args, call| {
            f.run(method, args, call)
        })
    }

    /// Adds the method `name` as it is on the wire: its signature as
    /// given, and `f` given the arguments as JSON values and the call,
    /// returning the results (as many as `signature.num_out_args - 1`).
    /// The number of arguments is checked against
    /// `signature.in_args` first.
    pub fn raw(
        self,
        name: &str,
        signature: MethodSignature,
        f: impl Fn(Vec<Value>, &mut ServerCall) -> Result<Vec<Value>> + Send + Sync + 'static,
    ) -> Service {
        let arity = signature.in_args.len();
        self.add(name, arity, signature, move |_, args, call| f(args, call))
    }

    /// Decides who may call this object with `authorizer` instead of the
    /// server's default policy. It is asked on the connection's thread and
    /// must not block (the authorizers of [`crate::security`] and
    /// [`AllowAll`](crate::rpc::AllowAll) do not).
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Service {
        self.authorizer = Some(Arc::new(authorizer));
        self
    }

    /// The object's signature, as its predefined `Signature` method gives
    /// it.
    pub fn signature(&self) -> &Signature {
        &self.object.signature
    }

    /// Adds a method of typed arguments: its signature derived.
    fn typed(
        self,
        name: &str,
        arity: usize,
        returns: bool,
        is_streaming: bool,
        run: impl Fn(&str, Vec<Value>, &mut ServerCall) -> Result<Vec<Value>> + Send + Sync + 'static,
    ) -> Service {
        let signature = MethodSignature {
            in_args: (1..=arity).map(|i| format!("arg{i}")).collect(),
            num_out_args: if returns { 2 } else { 1 },
            is_streaming,
        };
        self.add(name, arity, signature, run)
    }

    /// Adds the method `name` (UpperCamelCase), `arity` arguments.
    fn add(
        mut self,
        name: &str,
        arity: usize,
        signature: MethodSignature,
        run: impl Fn(&str, Vec<Value>, &mut ServerCall) -> Result<Vec<Value>> + Send + Sync + 'static,
    ) -> Service {
        let name = crate::naming::upper_first(name);
        let object = Arc::make_mut(&mut self.object);
        object.methods.insert(
            name.clone(),
            Arc::new(Method {
                arity,
                run: Box::new(run),
            }),
        );
        object.signature.insert(name, signature);
        self
    }
}

impl Dispatcher for Service {
    // (Two Arc clones: answered where the call is, no thread taken.)
    fn lookup(&self, call: Pending) -> Step<Pending> {
        let found = if call.call().suffix().is_empty() {
            Ok(Lookup {
                invoker: self.object.clone(),
                authorizer: self.authorizer.clone(),
            })
        } else {
            Err(Error::no_exist(format!(
                "{}: this server has no object below its own name",
                call.call().name()
            )))
        };
        call.found(found);
        Step::Done
    }
}

impl Invoker for Object {
    // The closures may block: they run on a call thread.
    fn invoke(&self, call: Invocation) -> Step<Invocation> {
        call.blocking(|call, args| {
            let method = call.method().to_string();
            self.run(&method, args, call)
        })
    }

    fn signature(&self, _call: &ServerCall) -> Result<Signature> {
        Ok(self.signature.clone())
    }
}

impl Object {
    /// Runs `method` with `args`: its closure, once the arguments are
    /// checked against it.
    fn run(&self, method: &str, args: Vec<Value>, call: &mut ServerCall) -> Result<Vec<Value>> {
        let Some(m) = self.methods.get(method) else {
            let known: Vec<&str> = self.signature.keys().map(String::as_str).collect();
            return Err(Error::no_exist(format!(
                "no method {method} (this object has {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        if args.len() != m.arity {
            return Err(Error::bad_arg(format!(
                "{method} takes {} argument{}, got {}",
                m.arity,
                if m.arity == 1 { "" } else { "s" },
                args.len()
            )));
        }
        // A closure that panics fails its call (`Internal`), not the
        // thread: the caller hears why at once.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (m.run)(method, args, call)))
            .unwrap_or_else(|_| Err(Error::internal(format!("{method} panicked"))))
    }
}

/// The two streams of a streaming call, typed: items of type `In` from
/// the caller, items of type `Out` to it (see [`Service::streaming`]).
pub struct Stream<'a, In, Out> {
    call: &'a mut ServerCall,
    _items: PhantomData<fn(In) -> Out>,
}

impl<In: DeserializeOwned, Out: Serialize> Stream<'_, In, Out> {
    /// The caller's next item; `None` once it closed its stream. An item
    /// that does not decode as `In` is `BadArg` (and ends the call, if
    /// the closure returns it); a cancelled call is `Aborted`, a passed
    /// deadline `Timeout`.
    pub fn recv(&mut self) -> Result<Option<In>> {
        match self.call.recv()? {
            None => Ok(None),
            Some(v) => serde_json::from_value(v).map(Some).map_err(|e| {
                Error::bad_arg(format!(
                    "a stream item of {} is not {}: {e}",
                    self.call.method(),
                    short_type::<In>()
                ))
                .with_source(e)
            }),
        }
    }

    /// Sends `item` to the caller, waiting for credit until the deadline
    /// (see [`ServerCall::send`]).
    pub fn send(&self, item: &Out) -> Result<()> {
        self.call.send(item)
    }

    /// The call: who is calling, its deadline, whether it was cancelled.
    pub fn call(&self) -> &ServerCall {
        self.call
    }
}

/// A closure that can serve a method (see [`Service::method`]):
/// `Fn(A1, …, An) -> Result<T>` for up to six arguments, each
/// `DeserializeOwned`, `T: Serialize`. Implemented for such closures; not
/// meant to be implemented otherwise.
pub trait Handler<Args>: Send + Sync + 'static {
    /// The number of arguments.
    #[doc(hidden)]
    const ARITY: usize;
    #[doc(hidden)]
    fn returns(&self) -> bool;
    #[doc(hidden)]
    fn run(&self, method: &str, args: Vec<Value>) -> Result<Vec<Value>>;
}

/// A closure that can serve a method given its call (see
/// [`Service::method_with_call`]): `Fn(&ServerCall, A1, …, An) ->
/// Result<T>`.
pub trait CallHandler<Args>: Send + Sync + 'static {
    /// The number of arguments.
    #[doc(hidden)]
    const ARITY: usize;
    #[doc(hidden)]
    fn returns(&self) -> bool;
    #[doc(hidden)]
    fn run(&self, method: &str, args: Vec<Value>, call: &ServerCall) -> Result<Vec<Value>>;
}

/// A closure that can serve a streaming method (see
/// [`Service::streaming`]): `Fn(&mut Stream<In, Out>, A1, …, An) ->
/// Result<T>`.
pub trait StreamHandler<In, Out, Args>: Send + Sync + 'static {
    /// The number of arguments.
    #[doc(hidden)]
    const ARITY: usize;
    #[doc(hidden)]
    fn returns(&self) -> bool;
    #[doc(hidden)]
    fn run(&self, method: &str, args: Vec<Value>, call: &mut ServerCall) -> Result<Vec<Value>>;
}

/// `T`'s name without its path, for messages.
fn short_type<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    // (`alloc::string::String` → `String`; generic types keep their
    // parameters' paths, which is still readable.)
    match full.find('<') {
        Some(_) => full,
        None => full.rsplit("::").next().unwrap_or(full),
    }
}

/// The `i`th argument (from 1) of `method`, decoded.
fn arg<A: DeserializeOwned>(method: &str, i: usize, v: Option<Value>) -> Result<A> {
    // (The count was checked before: a missing one is an internal fault.)
    let v = v.ok_or_else(|| Error::internal(format!("{method}: argument {i} missing")))?;
    serde_json::from_value(v).map_err(|e| {
        Error::bad_arg(format!(
            "argument {i} of {method} is not {}: {e}",
            short_type::<A>()
        ))
        .with_source(e)
    })
}

/// Whether a method returning `R` has a result (anything but `()`).
fn has_result<R: 'static>() -> bool {
    TypeId::of::<R>() != TypeId::of::<()>()
}

/// The results of a method that returned `r`.
fn results<R: Serialize + 'static>(method: &str, r: Result<R>) -> Result<Vec<Value>> {
    let r = r?;
    if !has_result::<R>() {
        return Ok(vec![]);
    }
    serde_json::to_value(&r)
        .map(|v| vec![v])
        .map_err(|e| Error::internal(format!("the result of {method}: {e}")).with_source(e))
}

macro_rules! count {
    () => { 0 };
    ($head:ident $($tail:ident)*) => { 1 + count!($($tail)*) };
}

macro_rules! handlers {
    ($($A:ident),*) => {
        impl<F, R, $($A,)*> Handler<($($A,)*)> for F
        where
            F: Fn($($A),*) -> Result<R> + Send + Sync + 'static,
            R: Serialize + 'static,
            $($A: DeserializeOwned,)*
        {
            const ARITY: usize = count!($($A)*);
            fn returns(&self) -> bool {
                has_result::<R>()
            }
            #[allow(non_snake_case, unused_variables, unused_mut)]
            fn run(&self, method: &str, args: Vec<Value>) -> Result<Vec<Value>> {
                let mut args = args.into_iter();
                let mut i = 0;
                $(i += 1; let $A = arg::<$A>(method, i, args.next())?;)*
                results(method, self($($A),*))
            }
        }

        impl<F, R, $($A,)*> CallHandler<($($A,)*)> for F
        where
            F: for<'c> Fn(&'c ServerCall, $($A),*) -> Result<R> + Send + Sync + 'static,
            R: Serialize + 'static,
            $($A: DeserializeOwned,)*
        {
            const ARITY: usize = count!($($A)*);
            fn returns(&self) -> bool {
                has_result::<R>()
            }
            #[allow(non_snake_case, unused_variables, unused_mut)]
            fn run(&self, method: &str, args: Vec<Value>, call: &ServerCall) -> Result<Vec<Value>> {
                let mut args = args.into_iter();
                let mut i = 0;
                $(i += 1; let $A = arg::<$A>(method, i, args.next())?;)*
                results(method, self(call, $($A),*))
            }
        }

        impl<F, In, Out, R, $($A,)*> StreamHandler<In, Out, ($($A,)*)> for F
        where
            F: for<'s, 'c> Fn(&'s mut Stream<'c, In, Out>, $($A),*) -> Result<R>
                + Send
                + Sync
                + 'static,
            In: DeserializeOwned,
            Out: Serialize,
            R: Serialize + 'static,
            $($A: DeserializeOwned,)*
        {
            const ARITY: usize = count!($($A)*);
            fn returns(&self) -> bool {
                has_result::<R>()
            }
            #[allow(non_snake_case, unused_variables, unused_mut)]
            fn run(&self, method: &str, args: Vec<Value>, call: &mut ServerCall) -> Result<Vec<Value>> {
                let mut args = args.into_iter();
                let mut i = 0;
                $(i += 1; let $A = arg::<$A>(method, i, args.next())?;)*
                let mut stream = Stream { call, _items: PhantomData };
                results(method, self(&mut stream, $($A),*))
            }
        }
    };
}

handlers!();
handlers!(A1);
handlers!(A1, A2);
handlers!(A1, A2, A3);
handlers!(A1, A2, A3, A4);
handlers!(A1, A2, A3, A4, A5);
handlers!(A1, A2, A3, A4, A5, A6);
