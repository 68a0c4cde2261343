//! The actor seam: small handles components hold instead of `actix::Addr<SomeActor>`.
//!
//! actix is only passively maintained, so no component names an actor type. A component that
//! needs to tell another one something holds a [`Sender<M>`] (fire and forget); one that
//! needs an answer holds an [`AsyncSender<M, R>`]. Both are cheap to clone and say nothing
//! about who receives: today an actix actor, in tests a plain tokio channel, tomorrow
//! whatever replaces actix. Handler bodies stay plain functions; the actor is only a mailbox.
//!
//! | handle | actix-backed | channel-backed (tests, non-actor receivers) |
//! |---|---|---|
//! | [`Sender<M>`] | [`Sender::from_addr`], [`Sender::from_recipient`] (actor handles [`Msg<M>`]) | [`channel`] |
//! | [`AsyncSender<M, R>`] | [`AsyncSender::from_addr`], [`AsyncSender::from_recipient`] (actor handles [`Ask<M, R>`]) | [`ask_channel`] |
//!
//! Message types stay free of actix: actix sees them wrapped in [`Msg`] / [`Ask`], so a
//! message can move to another runtime without changing its definition.
//!
//! A send never blocks and never fails silently: a receiver that is gone gives the message
//! back ([`SendError`]) or an [`AskError`], for the caller to log or drop.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

// ---------------------------------------------------------------------------------------------
// Fire and forget
// ---------------------------------------------------------------------------------------------

/// Something that can take a message of type `M` without answering.
pub trait CanSend<M>: Send + Sync + 'static {
    /// Queues `msg`; gives it back when the receiver is gone.
    fn send(&self, msg: M) -> Result<(), SendError<M>>;
}

/// The receiver of a message is gone; the message is handed back.
pub struct SendError<M>(pub M);

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the receiver of {} is gone", std::any::type_name::<M>())
    }
}

impl<M> std::error::Error for SendError<M> {}

/// A cloneable fire-and-forget handle for messages of type `M`.
pub struct Sender<M> {
    inner: Arc<dyn CanSend<M>>,
}

impl<M> Clone for Sender<M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M> fmt::Debug for Sender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sender<{}>", std::any::type_name::<M>())
    }
}

impl<M: Send + 'static> Sender<M> {
    /// A handle backed by any [`CanSend`] implementation.
    pub fn new(inner: impl CanSend<M>) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Queues `msg`; gives it back when the receiver is gone.
    pub fn send(&self, msg: M) -> Result<(), SendError<M>> {
        self.inner.send(msg)
    }

    /// A handle that calls `f` with every message, on the sender's task. Keep `f` short: it
    /// runs inline (e.g. pushing into a metrics registry).
    pub fn from_fn(f: impl Fn(M) + Send + Sync + 'static) -> Self {
        Self::new(FnSender(f, PhantomData))
    }

    /// A handle that drops every message (for components whose reports nobody reads).
    pub fn noop() -> Self {
        Self::from_fn(|_| {})
    }

    /// A handle that delivers to an actix actor implementing `Handler<Msg<M>>`.
    pub fn from_addr<A>(addr: actix::Addr<A>) -> Self
    where
        A: actix::Actor + actix::Handler<Msg<M>>,
        A::Context: actix::dev::ToEnvelope<A, Msg<M>>,
    {
        Self::from_recipient(addr.recipient())
    }

    /// A handle that delivers to an actix recipient of [`Msg<M>`].
    pub fn from_recipient(recipient: actix::Recipient<Msg<M>>) -> Self {
        Self::new(recipient)
    }
}

struct FnSender<F, M>(F, PhantomData<fn(M)>);

impl<F, M> CanSend<M> for FnSender<F, M>
where
    F: Fn(M) + Send + Sync + 'static,
    M: 'static,
{
    fn send(&self, msg: M) -> Result<(), SendError<M>> {
        (self.0)(msg);
        Ok(())
    }
}

impl<M: Send + 'static> CanSend<M> for mpsc::UnboundedSender<M> {
    fn send(&self, msg: M) -> Result<(), SendError<M>> {
        mpsc::UnboundedSender::send(self, msg).map_err(|e| SendError(e.0))
    }
}

/// A channel-backed [`Sender`] and the receiving end (tests, non-actor receivers).
pub fn channel<M: Send + 'static>() -> (Sender<M>, mpsc::UnboundedReceiver<M>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Sender::new(tx), rx)
}

/// How actix sees a fire-and-forget message `M`: an actor that receives `M` implements
/// `Handler<Msg<M>>` and calls a plain function with `msg.0`.
#[derive(Debug)]
pub struct Msg<M>(pub M);

impl<M: 'static> actix::Message for Msg<M> {
    type Result = ();
}

impl<M: Send + 'static> CanSend<M> for actix::Recipient<Msg<M>> {
    fn send(&self, msg: M) -> Result<(), SendError<M>> {
        // `do_send` queues even past the mailbox capacity and drops silently when closed,
        // so check first: a closed mailbox hands the message back.
        if !self.connected() {
            return Err(SendError(msg));
        }
        self.do_send(Msg(msg));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Request / response
// ---------------------------------------------------------------------------------------------

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// The receiver was gone before the request was queued.
    #[error("the receiver is gone")]
    Closed,
    /// The receiver dropped the request without answering (it stopped, or chose not to).
    #[error("the receiver dropped the request without answering")]
    Dropped,
}

/// Something that answers a message of type `M` with an `R`.
pub trait CanAsk<M, R>: Send + Sync + 'static {
    /// Queues `msg` and resolves to the answer.
    fn ask(&self, msg: M) -> BoxFuture<'static, Result<R, AskError>>;
}

/// A cloneable request/response handle: `M` in, `R` out.
pub struct AsyncSender<M, R> {
    inner: Arc<dyn CanAsk<M, R>>,
}

impl<M, R> Clone for AsyncSender<M, R> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M, R> fmt::Debug for AsyncSender<M, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AsyncSender<{}, {}>",
            std::any::type_name::<M>(),
            std::any::type_name::<R>()
        )
    }
}

impl<M: Send + 'static, R: Send + 'static> AsyncSender<M, R> {
    /// A handle backed by any [`CanAsk`] implementation.
    pub fn new(inner: impl CanAsk<M, R>) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Sends `msg` and waits for the answer. Dropping the future abandons the request.
    pub fn ask(&self, msg: M) -> BoxFuture<'static, Result<R, AskError>> {
        self.inner.ask(msg)
    }

    /// A handle that delivers to an actix actor implementing `Handler<Ask<M, R>>`.
    pub fn from_addr<A>(addr: actix::Addr<A>) -> Self
    where
        A: actix::Actor + actix::Handler<Ask<M, R>>,
        A::Context: actix::dev::ToEnvelope<A, Ask<M, R>>,
    {
        Self::from_recipient(addr.recipient())
    }

    /// A handle that delivers to an actix recipient of [`Ask<M, R>`].
    pub fn from_recipient(recipient: actix::Recipient<Ask<M, R>>) -> Self {
        Self::new(recipient)
    }
}

/// How actix sees a request `M` answered by `R`: the receiving actor implements
/// `Handler<Ask<M, R>>` with `type Result = actix::MessageResult<Ask<M, R>>`.
pub struct Ask<M, R>(pub M, PhantomData<fn() -> R>);

impl<M, R> Ask<M, R> {
    /// Wraps a request.
    pub fn new(msg: M) -> Self {
        Self(msg, PhantomData)
    }
}

impl<M: fmt::Debug, R> fmt::Debug for Ask<M, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Ask").field(&self.0).finish()
    }
}

impl<M: 'static, R: 'static> actix::Message for Ask<M, R> {
    type Result = R;
}

impl<M: Send + 'static, R: Send + 'static> CanAsk<M, R> for actix::Recipient<Ask<M, R>> {
    fn ask(&self, msg: M) -> BoxFuture<'static, Result<R, AskError>> {
        if !self.connected() {
            return Box::pin(async { Err(AskError::Closed) });
        }
        let request = self.send(Ask::new(msg));
        Box::pin(async move {
            request.await.map_err(|e| match e {
                actix::MailboxError::Closed => AskError::Closed,
                actix::MailboxError::Timeout => AskError::Dropped,
            })
        })
    }
}

/// A request as a channel-backed receiver gets it: the message and the way to answer.
pub struct Asked<M, R> {
    /// The request.
    pub msg: M,
    reply: oneshot::Sender<R>,
}

impl<M: fmt::Debug, R> fmt::Debug for Asked<M, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Asked").field("msg", &self.msg).finish()
    }
}

impl<M, R> Asked<M, R> {
    /// Answers the request (an asker that gave up is ignored).
    pub fn respond(self, answer: R) {
        let _ = self.reply.send(answer);
    }
}

struct ChannelAsker<M, R>(mpsc::UnboundedSender<Asked<M, R>>);

impl<M: Send + 'static, R: Send + 'static> CanAsk<M, R> for ChannelAsker<M, R> {
    fn ask(&self, msg: M) -> BoxFuture<'static, Result<R, AskError>> {
        let (reply, answer) = oneshot::channel();
        if self.0.send(Asked { msg, reply }).is_err() {
            return Box::pin(async { Err(AskError::Closed) });
        }
        Box::pin(async move { answer.await.map_err(|_| AskError::Dropped) })
    }
}

/// A channel-backed [`AsyncSender`] and the receiving end, which answers each [`Asked`].
pub fn ask_channel<M: Send + 'static, R: Send + 'static>()
-> (AsyncSender<M, R>, mpsc::UnboundedReceiver<Asked<M, R>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (AsyncSender::new(ChannelAsker(tx)), rx)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use actix::{Actor, ActorContext, Context, Handler, MessageResult};

    use super::*;

    /// A component that only knows the seam, not who receives.
    struct Reporter {
        out: Sender<String>,
        adder: AsyncSender<(u32, u32), u32>,
    }

    impl Reporter {
        async fn report_sum(&self, a: u32, b: u32) -> Result<u32, AskError> {
            let sum = self.adder.ask((a, b)).await?;
            self.out
                .send(format!("{a}+{b}={sum}"))
                .map_err(|_| AskError::Closed)?;
            Ok(sum)
        }
    }

    #[derive(Default)]
    struct Calc {
        seen: Arc<Mutex<Vec<String>>>,
    }

    impl Actor for Calc {
        type Context = Context<Self>;
    }

    impl Handler<Msg<String>> for Calc {
        type Result = ();
        fn handle(&mut self, msg: Msg<String>, ctx: &mut Context<Self>) {
            if msg.0 == "stop" {
                ctx.stop();
                return;
            }
            self.seen.lock().unwrap().push(msg.0);
        }
    }

    impl Handler<Ask<(u32, u32), u32>> for Calc {
        type Result = MessageResult<Ask<(u32, u32), u32>>;
        fn handle(&mut self, msg: Ask<(u32, u32), u32>, _: &mut Context<Self>) -> Self::Result {
            MessageResult(add(msg.0))
        }
    }

    /// The handler body is a plain function.
    fn add((a, b): (u32, u32)) -> u32 {
        a + b
    }

    #[actix_rt::test]
    async fn a_component_talks_to_an_actix_actor_through_the_seam() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let addr = Calc { seen: seen.clone() }.start();
        let reporter = Reporter {
            out: Sender::from_addr(addr.clone()),
            adder: AsyncSender::from_addr(addr),
        };
        assert_eq!(reporter.report_sum(2, 3).await, Ok(5));
        // The fire-and-forget message is handled after the request (same mailbox, in order).
        assert_eq!(reporter.adder.ask((0, 0)).await, Ok(0));
        assert_eq!(*seen.lock().unwrap(), ["2+3=5"]);
    }

    #[actix_rt::test]
    async fn a_stopped_actor_hands_messages_back() {
        let addr = Calc::default().start();
        let out: Sender<String> = Sender::from_addr(addr.clone());
        let ask: AsyncSender<(u32, u32), u32> = AsyncSender::from_addr(addr.clone());
        out.send("stop".into()).unwrap();
        let mut refused = None;
        for _ in 0..200 {
            if let Err(e) = out.send("probe".into()) {
                refused = Some(e.0);
                break;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(refused.as_deref(), Some("probe"));
        assert_eq!(ask.ask((1, 1)).await, Err(AskError::Closed));
    }

    #[tokio::test]
    async fn the_same_component_runs_on_plain_channels_in_tests() {
        let (out, mut lines) = channel::<String>();
        let (adder, mut requests) = ask_channel::<(u32, u32), u32>();
        tokio::spawn(async move {
            while let Some(req) = requests.recv().await {
                let answer = add(req.msg);
                req.respond(answer);
            }
        });
        let reporter = Reporter { out, adder };
        assert_eq!(reporter.report_sum(20, 22).await, Ok(42));
        assert_eq!(lines.recv().await.as_deref(), Some("20+22=42"));
    }

    #[tokio::test]
    async fn a_closed_channel_gives_the_message_back() {
        let (out, lines) = channel::<String>();
        drop(lines);
        let err = out.send("lost?".into()).unwrap_err();
        assert_eq!(err.0, "lost?");
        assert!(err.to_string().contains("gone"));

        let (ask, requests) = ask_channel::<u8, u8>();
        drop(requests);
        assert_eq!(ask.ask(1).await, Err(AskError::Closed));

        let (ask, mut requests) = ask_channel::<u8, u8>();
        let pending = ask.ask(1);
        drop(requests.recv().await); // dropped without an answer
        assert_eq!(pending.await, Err(AskError::Dropped));
    }

    #[test]
    fn function_and_noop_senders_never_fail() {
        let got = Arc::new(Mutex::new(0u32));
        let g = got.clone();
        let s = Sender::from_fn(move |n: u32| *g.lock().unwrap() += n);
        s.send(2).unwrap();
        s.clone().send(3).unwrap();
        assert_eq!(*got.lock().unwrap(), 5);
        Sender::<u32>::noop().send(1).unwrap();
    }
}
