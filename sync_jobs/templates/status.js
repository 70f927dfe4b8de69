async function syncNow(job) {
  let token = sessionStorage.getItem("tfmirror-admin-token");
  if (!token) token = prompt("Admin token (TFMIRROR_ADMIN_TOKEN)");
  if (!token) return;
  const answer = await fetch("/api/jobs/" + job + "/run",
    {method: "POST", headers: {"Authorization": "Bearer " + token}});
  const body = await answer.json();
  const refused = answer.status === 401 || answer.status === 403;
  if (refused) sessionStorage.removeItem("tfmirror-admin-token");
  else sessionStorage.setItem("tfmirror-admin-token", token);
  document.getElementById("message").textContent = job + ": " + body.message;
}
