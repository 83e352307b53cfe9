//! `/people`: find people by name and start a direct message (one person, or a group built
//! up in the URL with "Add to group"), or, with `?invite=ID`, add them to a channel. Plain
//! links and forms, so it works without JavaScript; rendered by the server only (see
//! `server_page.rs`).

#[cfg(feature = "ssr")]
pub use render::{page, Asked};

#[cfg(feature = "ssr")]
mod render {
    use super::super::url_error::error_in_query;
    use crate::api::{Membership, OpenDirect};
    use crate::error::AppError;
    use crate::paths::query_param;
    use crate::protocol::{UserId, UserInfo, MAX_DIRECT_MEMBERS};
    use leptos::either::Either;
    use leptos::prelude::*;
    use leptos::server_fn::ServerFn;

    /// What the page was asked for, from its query string.
    pub struct Asked {
        /// The name searched for.
        pub q: String,
        /// The channel people are added to, for "Add people".
        invite: Option<String>,
        /// The people gathered for a group so far.
        with: Vec<String>,
        /// The query string, for errors brought back by a form post.
        query: String,
    }

    impl Asked {
        pub fn from_query(query: &str) -> Self {
            let with = query_param(query, "with")
                .map(|w| {
                    w.split(',')
                        .filter(|s| !s.is_empty())
                        .take(MAX_DIRECT_MEMBERS - 1)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Self {
                q: query_param(query, "q").unwrap_or_default(),
                invite: query_param(query, "invite"),
                with,
                query: query.to_string(),
            }
        }
    }

    /// The picker, with the people found for `asked.q` (the caller is `me`).
    pub fn page(asked: Asked, found: Result<Vec<UserInfo>, AppError>, me: UserId) -> impl IntoView {
        {
            let Asked {
                q,
                invite,
                with: group,
                query,
            } = asked;
            let row = |person: UserInfo| {
                let name = person.name.clone().unwrap_or_default();
                let id = person.id.0.clone();
                let is_me = person.id == me;
                let action = match &invite {
                    Some(conversation) => Either::Left(view! {
                        <form method="post" action=Membership::url()>
                            <input type="hidden" name="conversation" value=conversation.clone()/>
                            <input type="hidden" name="invite" value=id.clone()/>
                            <button type="submit">{format!("Add {name}")}</button>
                        </form>
                    }),
                    None => {
                        let mut with = group.clone();
                        let in_group = with.contains(&id);
                        if !in_group {
                            with.push(id.clone());
                        }
                        let add = format!("/people?q={}&with={}", urlencode(&q), with.join(","));
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
            let results = match found {
                Ok(list) if list.is_empty() && !q.trim().is_empty() => {
                    Either::Left(view! { <p>"Nobody by that name."</p> })
                }
                Ok(list) => Either::Right(Either::Left(view! {
                    <ul class="people-list">{list.into_iter().map(row).collect_view()}</ul>
                })),
                Err(e) => Either::Right(Either::Right(
                    view! { <p role="alert" class="error">{e.to_string()}</p> },
                )),
            };
            let errors = [OpenDirect::PATH, Membership::PATH]
                .into_iter()
                .filter_map(|path| error_in_query(&query, path))
                .map(|e| view! { <p role="alert" class="error">{e}</p> })
                .collect_view();
            let with = group.join(",");
            view! {
                <section class="people">
                    <h1>{if invite.is_some() { "Add people" } else { "New message" }}</h1>
                    <form method="get" action="/people" class="people-search">
                        {invite.clone().map(|i| view! { <input type="hidden" name="invite" value=i/> })}
                        {(!with.is_empty()).then(|| view! { <input type="hidden" name="with" value=with.clone()/> })}
                        <label for="people-q">"Find people by name"</label>
                        <input id="people-q" name="q" value=q.clone() autocomplete="off"/>
                        <button type="submit">"Search"</button>
                    </form>
                    {errors}
                    {(!group.is_empty()).then(|| view! {
                        <form method="post" action=OpenDirect::url() class="group">
                            <input type="hidden" name="people" value=with.clone()/>
                            <button type="submit">{format!("Start a group with {} people", group.len() + 1)}</button>
                        </form>
                    })}
                    {results}
                </section>
            }
        }
    }

    /// Percent-encodes a query value.
    fn urlencode(value: &str) -> String {
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
    }
}
