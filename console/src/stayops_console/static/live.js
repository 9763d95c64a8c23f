// Live refresh without a framework: an element with data-live="URL" is replaced by
// that URL's fragment every data-interval ms (2 s by default) for as long as the new
// fragment still carries data-live (a finished run's timeline does not).
const DEFAULT_INTERVAL_MS = 2000;

function watch(element) {
  const url = element.dataset.live;
  const interval = Number(element.dataset.interval) || DEFAULT_INTERVAL_MS;
  setTimeout(async () => {
    let next = element;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { "X-Console-Fragment": "1" } });
      if (response.status === 401) {
        window.location.assign(response.headers.get("X-Console-Sign-In") || "/sign-in");
        return;
      }
      if (response.ok) {
        const template = document.createElement("template");
        template.innerHTML = (await response.text()).trim();
        const fresh = template.content.firstElementChild;
        if (fresh) {
          element.replaceWith(fresh);
          next = fresh;
        }
      }
    } catch (error) {
      // The console may restart: keep trying.
    }
    if (next.dataset.live) watch(next);
  }, interval);
}

document.querySelectorAll("[data-live]").forEach(watch);
