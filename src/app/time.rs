//! Timestamps: stored and sent as UTC; shown in the reader's local time once the page runs
//! in the browser (the server cannot know the reader's zone, so it renders UTC first).

use chrono::{DateTime, Timelike, Utc};

/// The machine-readable form for `<time datetime=…>`.
pub fn iso(at: &DateTime<Utc>) -> String {
    crate::timestamp::format(at)
}

/// The server-rendered form: hours and minutes in UTC.
pub fn utc_label(at: &DateTime<Utc>) -> String {
    // Written out rather than through `format("%H:%M")`, whose pattern parsing showed up in
    // server-rendering profiles (a hundred of these per page).
    format!("{:02}:{:02} UTC", at.hour(), at.minute())
}

/// Hours and minutes in the browser's time zone and locale (UTC outside a browser).
pub fn local_label(at: &DateTime<Utc>) -> String {
    #[cfg(target_arch = "wasm32")]
    {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(
            at.timestamp_millis() as f64
        ));
        let options = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&options, &"hour".into(), &"2-digit".into());
        let _ = js_sys::Reflect::set(&options, &"minute".into(), &"2-digit".into());
        date.to_locale_time_string_with_options("default", &options)
            .as_string()
            .unwrap_or_else(|| utc_label(at))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        utc_label(at)
    }
}

/// The full local date and time, for a tooltip.
pub fn local_full(at: &DateTime<Utc>) -> String {
    #[cfg(target_arch = "wasm32")]
    {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(
            at.timestamp_millis() as f64
        ));
        date.to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED)
            .as_string()
            .unwrap_or_else(|| iso(at))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    }
}

/// Now, in milliseconds since 1970 (the browser's clock: chrono's is not available in
/// WebAssembly).
pub fn now_ms() -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now() as i64
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Utc::now().timestamp_millis()
    }
}

/// The browser's offset from UTC at `ms` (milliseconds since 1970), in minutes east; 0
/// outside a browser.
pub fn offset_minutes(ms: i64) -> i32 {
    #[cfg(target_arch = "wasm32")]
    {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
        -(date.get_timezone_offset() as i32)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = ms;
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_forms() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T09:05:07.250Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(iso(&at), "2026-11-22T09:05:07.250Z");
        assert_eq!(utc_label(&at), "09:05 UTC");
        assert_eq!(local_label(&at), "09:05 UTC");
    }
}
