//! `/people`: find people by name and start a direct message (one person, or a group built
//! up in the URL with "Add to group"), or, with `?invite=ID`, add them to a channel. Plain
//! links and forms, so it works without JavaScript.

use super::url_error::UrlError;
use crate::api::{find_people, Membership, OpenDirect};
use crate::protocol::{UserInfo, MAX_DIRECT_MEMBERS};
use leptos::either::Either;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_router::hooks::use_query_map;

/// The people picker.
#[component]
pub fn People() -> impl IntoView {
    let query = use_query_map();
    let q = move || query.read().get("q").unwrap_or_default();
    let invite = move || query.read().get("invite");
    let group = move || {
        query
            .read()
            .get("with")
            .map(|w| {
                w.split(',')
                    .filter(|s| !s.is_empty())
                    .take(MAX_DIRECT_MEMBERS - 1)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let found = Resource::new(q, |q| async move {
        if q.trim().is_empty() {
            Ok(Vec::new())
        } else {
            find_people(q).await
        }
    });
    let me = use_context::<super::workspace::Me>();
    let row = move |person: UserInfo| {
        let name = person.name.clone().unwrap_or_default();
        let id = person.id.0.clone();
        let is_me = me.is_some_and(|m| m.is(&person.id));
        let action = match invite() {
            Some(conversation) => Either::Left(view! {
                <form method="post" action=Membership::url()>
                    <input type="hidden" name="conversation" value=conversation/>
                    <input type="hidden" name="invite" value=id.clone()/>
                    <button type="submit">{format!("Add {name}")}</button>
                </form>
            }),
            None => {
                let mut with = group();
                let in_group = with.contains(&id);
                if !in_group {
                    with.push(id.clone());
                }
                let add = format!("/people?q={}&with={}", urlencode(&q()), with.join(","));
                Either::Right(view! {
                    <form method="post" action=OpenDirect::url()>
                        <input type="hidden" name="people" value=id.clone()/>
                        <button type="submit">{if is_me { "Message yourself".to_string() } else { format!("Message {name}") }}</button>
                    </form>
                    {(!in_group && !is_me).then(|| view! { <a class="add-to-group" href=add>"Add to group"</a> })}
                })
            }
        };
        view! {
            <li class="person">
                <span class="author">{person.name.clone()}</span>
                <span class="tag">{person.id.tag()}</span>
                {action}
            </li>
        }
    };
    view! {
        <section class="people">
            <h1>{move || if invite().is_some() { "Add people" } else { "New message" }}</h1>
            <form method="get" action="/people" class="people-search">
                {move || invite().map(|i| view! { <input type="hidden" name="invite" value=i/> })}
                {move || {
                    let with = group().join(",");
                    (!with.is_empty()).then(|| view! { <input type="hidden" name="with" value=with/> })
                }}
                <label for="people-q">"Find people by name"</label>
                <input id="people-q" name="q" value=q autocomplete="off"/>
                <button type="submit">"Search"</button>
            </form>
            <UrlError path=OpenDirect::PATH/>
            <UrlError path=Membership::PATH/>
            {move || {
                let with = group();
                (!with.is_empty()).then(|| view! {
                    <form method="post" action=OpenDirect::url() class="group">
                        <input type="hidden" name="people" value=with.join(",")/>
                        <button type="submit">{format!("Start a group with {} people", with.len() + 1)}</button>
                    </form>
                })
            }}
            <Transition fallback=|| view! { <p class="loading">"Searching…"</p> }>
                {move || Suspend::new(async move {
                    match found.await {
                        Ok(list) if list.is_empty() && !q().trim().is_empty() => {
                            Either::Left(view! { <p>"Nobody by that name."</p> }.into_any())
                        }
                        Ok(list) => Either::Left(view! {
                            <ul class="people-list">{list.into_iter().map(row).collect_view()}</ul>
                        }.into_any()),
                        Err(e) => Either::Right(view! { <p role="alert" class="error">{e.to_string()}</p> }),
                    }
                })}
            </Transition>
        </section>
    }
}

/// Percent-encodes a query value.
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
