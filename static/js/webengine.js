// webengine's pages work without this file; it adds keyboard shortcuts, bulk selection, confirmations,
// copy buttons and the refresh of pages that wait for a job. No framework: the pages are server-rendered.
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const typing = (el) =>
    el && (el.isContentEditable || /^(TEXTAREA|SELECT)$/.test(el.tagName) ||
      (el.tagName === "INPUT" && !/^(checkbox|radio|button|submit|reset)$/.test(el.type)));

  // Keyboard: `/` search, `g x` go to a section, `n` new, `j`/`k` rows, Enter open, `x` select, `?` help.
  let pendingG = 0;
  let current = -1;
  const rows = () => $$("table[data-rows] tbody tr").filter((tr) => !tr.querySelector(".empty"));

  function focusRow(index) {
    const all = rows();
    if (!all.length) return;
    current = Math.max(0, Math.min(all.length - 1, index));
    all.forEach((tr) => tr.removeAttribute("data-cursor"));
    const row = all[current];
    row.setAttribute("data-cursor", "");
    // The row's link takes the focus, so that Enter opens it; `x` finds the row's checkbox itself.
    (row.querySelector("a") || row.querySelector("input, button") || row).focus();
  }

  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && typing(event.target) && event.target.form) {
      event.preventDefault();
      event.target.form.requestSubmit();
      return;
    }
    if (event.key === "Escape" && typing(event.target)) {
      event.target.blur();
      return;
    }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (pendingG && Date.now() - pendingG < 1200) {
      pendingG = 0;
      const link = $(`.nav a[data-key="${event.key}"]`);
      if (link) {
        event.preventDefault();
        link.click();
      }
      return;
    }
    const row = rows()[current];
    switch (event.key) {
      case "g":
        pendingG = Date.now();
        break;
      case "/": {
        const search = $("input[type=search]");
        if (search) {
          event.preventDefault();
          search.focus();
          search.select();
        }
        break;
      }
      case "n": {
        const link = $("[data-new]");
        if (link) {
          event.preventDefault();
          link.click();
        }
        break;
      }
      case "j":
        event.preventDefault();
        focusRow(current + 1);
        break;
      case "k":
        event.preventDefault();
        focusRow(current - 1);
        break;
      case "x": {
        const box = row && row.querySelector("input[type=checkbox][name=ids]");
        if (box) {
          event.preventDefault();
          box.click();
        }
        break;
      }
      case "?": {
        const help = $("#keys");
        if (help && help.showModal) help.showModal();
        break;
      }
      default:
    }
  });

  // Bulk selection: checkboxes named `ids` tied (form=...) to a form[data-bulk]; Shift+click selects a range.
  function setUpBulk(form) {
    const boxes = $$(`input[type=checkbox][name=ids][form="${form.id}"]`);
    const all = $(`input[data-select-all][form="${form.id}"]`) || $("input[data-select-all]");
    const count = $("[data-selected-count]", form);
    const buttons = $$("button[name=action], button[data-logs]", form);
    let last = null;

    function update() {
      const selected = boxes.filter((box) => box.checked).length;
      boxes.forEach((box) => box.closest("tr")?.classList.toggle("selected", box.checked));
      if (count) count.textContent = selected ? `${selected} selected` : "None selected";
      buttons.forEach((button) => { button.disabled = selected === 0; });
      if (all) {
        all.checked = selected > 0 && selected === boxes.length;
        all.indeterminate = selected > 0 && selected < boxes.length;
      }
    }

    boxes.forEach((box) => {
      box.addEventListener("click", (event) => {
        if (event.shiftKey && last && last !== box) {
          const [a, b] = [boxes.indexOf(last), boxes.indexOf(box)].sort((x, y) => x - y);
          boxes.slice(a, b + 1).forEach((other) => { other.checked = box.checked; });
        }
        last = box;
        update();
      });
    });
    // The logs of the selected containers side by side: a page of the live views, reached by GET.
    $$("button[data-logs]", form).forEach((button) => {
      button.hidden = false;
      button.addEventListener("click", () => {
        const query = boxes.filter((box) => box.checked).map((box) => `id=${encodeURIComponent(box.value)}`);
        location.href = `${button.dataset.logs}?${query.join("&")}`;
      });
    });
    if (all) {
      all.addEventListener("change", () => {
        boxes.forEach((box) => { box.checked = all.checked; });
        update();
      });
    }
    update();
  }

  // Confirmations: a form or button with data-confirm asks first.
  document.addEventListener("submit", (event) => {
    const submitter = event.submitter;
    const text = (submitter && submitter.dataset.confirm) || event.target.dataset.confirm;
    if (!text) return;
    let message = text;
    if (event.target.dataset.bulk) {
      const selected = $$(`input[name=ids][form="${event.target.id}"]:checked`).length;
      message = text.replace("{n}", String(selected));
    }
    if (!window.confirm(message)) event.preventDefault();
  });

  // Copy buttons: data-copy names the element whose text is copied.
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = $(button.dataset.copy);
    if (!source) return;
    const text = source.value ?? source.textContent;
    try {
      await navigator.clipboard.writeText(text.trim());
    } catch {
      const range = document.createRange();
      range.selectNodeContents(source);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      document.execCommand("copy");
    }
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });

  // Filters: a select with data-autosubmit submits its form when it changes.
  document.addEventListener("change", (event) => {
    if (event.target.matches("select[data-autosubmit]")) event.target.form.requestSubmit();
  });

  // Pages that wait for something (a job, a container changing state) mark an element with an id and
  // data-refresh="ms": it is fetched again and swapped in place until the new copy no longer has it.
  function refresh(element) {
    const every = Number(element.dataset.refresh) || 1000;
    const timer = setTimeout(async () => {
      if (document.hidden) {
        refresh(element);
        return;
      }
      try {
        const response = await fetch(location.href, { headers: { "X-Refresh": "1" }, credentials: "same-origin" });
        if (!response.ok) return;
        const html = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = html.getElementById(element.id);
        if (!fresh) return;
        element.replaceWith(fresh);
        if (fresh.dataset.refresh) refresh(fresh);
        else document.dispatchEvent(new CustomEvent("webengine:settled", { detail: fresh }));
      } catch {
        refresh(element);
      }
    }, every);
    element.addEventListener("webengine:stop", () => clearTimeout(timer), { once: true });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $$("form[data-bulk]").forEach(setUpBulk);
    $$("[data-refresh][id]").forEach(refresh);
    $$("[data-autofocus]").forEach((el) => el.focus());
  });
})();
