//! The demo object that `wsprd demo` serves: `Add(a, b)`, `Divide(a, b)`
//! (`BadArg` on division by zero) and `StreamingAdd()` (for each number it
//! receives it streams the running total; its result is the final total).

use std::sync::Arc;

use serde_json::{Number, Value};

use crate::error::{Error, Result};
use crate::rpc::{
    AllowAll, Dispatcher, Invocation, Invoker, Lookup, MethodSignature, Pending, ServerCall,
    Signature, Step,
};

/// The demo object's dispatcher: every suffix is the same adder.
#[derive(Clone, Default)]
pub struct Demo;

impl Dispatcher for Demo {
    fn lookup(&self, call: Pending) -> Step<Pending> {
        call.found(Ok(Lookup {
            invoker: Arc::new(Adder),
            // The demo object is public.
            authorizer: Some(Arc::new(AllowAll)),
        }));
        Step::Done
    }
}

/// The demo object's signature.
pub fn signature() -> Signature {
    let m = |args: &[&str], streaming: bool| MethodSignature {
        in_args: args.iter().map(|s| s.to_string()).collect(),
        num_out_args: 2,
        is_streaming: streaming,
    };
    let mut sig = Signature::new();
    sig.insert("Add".into(), m(&["a", "b"], false));
    sig.insert("Divide".into(), m(&["a", "b"], false));
    sig.insert("StreamingAdd".into(), m(&[], true));
    sig
}

struct Adder;

/// Add or Divide.
fn arithmetic(method: &str, args: &[Value]) -> Result<Vec<Value>> {
    check(method, args)?;
    let (a, b) = (number(&args[0], "a")?, number(&args[1], "b")?);
    if method == "Add" {
        return Ok(vec![add(&a, &b)?]);
    }
    let (a, b) = (
        a.as_f64().unwrap_or(f64::NAN),
        b.as_f64().unwrap_or(f64::NAN),
    );
    if b == 0.0 {
        return Err(Error::bad_arg("division by zero"));
    }
    Ok(vec![float(a / b)?])
}

/// StreamingAdd: for each number it receives, the running total.
fn streaming_add(call: &mut ServerCall) -> Result<Vec<Value>> {
    let mut total = Value::from(0);
    while let Some(item) = call.recv()? {
        let n = number(&item, "each streamed item")?;
        let Value::Number(t) = &total else {
            unreachable!()
        };
        total = add(t, &n)?;
        call.send(&total)?;
    }
    Ok(vec![total])
}

fn number(v: &Value, what: &str) -> Result<Number> {
    match v {
        Value::Number(n) => Ok(n.clone()),
        other => Err(Error::bad_arg(format!(
            "{what} must be a number, got {other}"
        ))),
    }
}

/// The sum of two JSON numbers, exact for integers.
fn add(a: &Number, b: &Number) -> Result<Value> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64())
        && let Some(s) = x.checked_add(y)
    {
        return Ok(Value::from(s));
    }
    float(a.as_f64().unwrap_or(f64::NAN) + b.as_f64().unwrap_or(f64::NAN))
}

fn float(f: f64) -> Result<Value> {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        return Ok(Value::from(f as i64));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| Error::bad_arg("the result is not a finite number"))
}

/// Checks `method` and its arguments against the signature.
fn check(method: &str, args: &[Value]) -> Result<()> {
    // Built once, not per call.
    static SIG: std::sync::OnceLock<Signature> = std::sync::OnceLock::new();
    let sig = SIG.get_or_init(signature);
    let m = sig
        .get(method)
        .ok_or_else(|| Error::no_exist(format!("the demo object has no method {method}")))?;
    if args.len() != m.in_args.len() {
        return Err(Error::bad_arg(format!(
            "{method} takes {} arguments, got {}",
            m.in_args.len(),
            args.len()
        )));
    }
    Ok(())
}

impl Invoker for Adder {
    fn invoke(&self, call: Invocation) -> Step<Invocation> {
        match call.method() {
            // Add and Divide never block: answered on the connection's
            // thread.
            "Add" | "Divide" => call.now(|call, args| arithmetic(call.method(), &args)),
            // StreamingAdd waits for items (and for credit): on a call
            // thread.
            "StreamingAdd" => call.blocking(|call, args| {
                check("StreamingAdd", &args)?;
                streaming_add(call)
            }),
            method => {
                let e = Error::no_exist(format!("the demo object has no method {method}"));
                call.reply(Err(e));
                Step::Done
            }
        }
    }

    fn signature(&self, _call: &ServerCall) -> Result<Signature> {
        Ok(signature())
    }
}
