#!/usr/bin/env bash
# The demo: the embedded default, end to end, on a machine with Docker and nothing else.
#   bash scripts/demo.sh        set up (scripts/setup.sh), start a throwaway Debian target
#                               running sshd, deploy MLflow to it over SSH with site.yml,
#                               onboard you (the client role writes demo/ssh_config), open
#                               the tunnel, log a sample training run through it, print the URL
#   bash scripts/demo.sh down   close the tunnel, remove the target and demo/
# Your ~/.ssh is left alone unless you ask: MLFLOW_DEMO_SSH_CONFIG=~/.ssh/config puts the
# Host block there (`down` removes it again). MLFLOW_DEMO_PORT picks the local port (5000).
# It builds only the images it uses (scripts/images.sh --only demo) and prints one line per
# step with the time since it started, and a line every 15 s while a step runs.
# MLflow's job runner (GenAI scorers and evaluation) is off on the demo's server
# (mlflow_server_job_execution: false): the demo uses none of it, and it saves ~1.3 GiB.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
demo="$root/demo"
target=mlflow-demo-target
alias=mlflowserver
control="$demo/tunnel.sock"
ssh_config=${MLFLOW_DEMO_SSH_CONFIG:-$demo/ssh_config}
export PATH="$root/.venv/bin:$PATH"
# This checkout, not a copy some earlier run installed elsewhere.
export ANSIBLE_COLLECTIONS_PATH="$root/collections"
# shellcheck source=scripts/progress.sh
. scripts/progress.sh

# The task a running playbook is at.
ansible_note() {
  grep -a '^TASK \[' "$1" | tail -1 | sed 's/^TASK \[\(.*\)\].*/\1/' | cut -c1-70
}

# run LOG ansible-playbook PLAYBOOK...: Ansible's full output in demo/logs/LOG.log, a line every
# 15 s with the task it is at, then its recap in one line (or the log's tail on failure).
run() {
  local log="$demo/logs/$1.log" name
  shift
  name=$(basename "$2")
  WATCH_NOTE=ansible_note watch "demo: $name" "$log" "$@" || exit 1
  step "demo: $name done ($WATCHED s): $(sed -n '/^PLAY RECAP/,/^$/p' "$log" \
    | awk 'NR > 1 && NF {printf "%s%s %s %s %s", sep, $1, $3, $4, $6; sep = "; "}')"
}

close_tunnel() {
  if [ -S "$control" ]; then
    ssh -S "$control" -O exit "$alias" 2>/dev/null || rm -f "$control"
  fi
}

down() {
  close_tunnel
  # Ansible needs the venv; without it, setup never ran and there is no block to remove.
  if [ -f "$demo/ssh_config_path" ] && [ "$(cat "$demo/ssh_config_path")" != "$demo/ssh_config" ] \
    && [ -x "$root/.venv/bin/ansible" ]; then
    step "demo: removing Host $alias from $(cat "$demo/ssh_config_path")"
    # The implicit localhost runs modules with this venv's Python.
    ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false \
      ansible localhost -m ansible.builtin.include_role -a name=mlops.mlflow.client \
      -e mlflow_client_state=absent -e "mlflow_client_host_alias=$alias" \
      -e "mlflow_client_ssh_config_path=$(cat "$demo/ssh_config_path")" >/dev/null
  fi
  if docker rm -f -v "$target" >/dev/null 2>&1; then step "demo: removed the container $target"; fi
  rm -rf "$demo"
  step "demo: down"
}

if [ "${1:-up}" = down ]; then
  down
  exit 0
fi

step "demo: setting up this machine (scripts/setup.sh --only demo)"
bash scripts/setup.sh --only demo
if ! command -v ssh >/dev/null; then
  step "demo: installing openssh-client"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client >/dev/null
fi
mkdir -p "$demo/logs"
chmod 700 "$demo"
echo "$ssh_config" >"$demo/ssh_config_path"
# The previous run's tunnel would hold the port that onboarding checks.
close_tunnel

step "demo: starting the throwaway target $target (mlops-target:trixie, systemd and sshd)"
if [ "$(docker inspect -f '{{.State.Running}}' "$target" 2>/dev/null)" != true ]; then
  docker rm -f -v "$target" >/dev/null 2>&1 || true
  rm -f "$demo/known_hosts"
  # The same container settings as the Molecule targets (extensions/molecule/shared/vars/target.yml).
  mapfile -t target_flags < <(python extensions/molecule/shared/target_args.py)
  if [ ${#target_flags[@]} -eq 0 ]; then
    echo "demo: no container settings read from extensions/molecule/shared/vars/target.yml" >&2
    exit 1
  fi
  docker run -d --name "$target" --hostname mlflow-demo "${target_flags[@]}" \
    mlops-target:trixie /sbin/init >/dev/null
fi
# systemd's bus appears a moment after the container starts.
for i in $(seq 60); do
  state=$(docker exec "$target" systemctl is-system-running --wait 2>/dev/null || true)
  case $state in running | degraded) break ;; esac
  [ $((i % 15)) -ne 0 ] || step "demo: waiting for the target's systemd ($i s): ${state:-starting}"
  sleep 1
done
case $state in running | degraded) ;; *) step "demo: the target's systemd is '$state'" >&2; exit 1 ;; esac
address=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$target")
step "demo: $target is up at $address, sshd running"

# Two keys, as in real life: the admin's, for Ansible as root, and yours, for the tunnel.
for key in admin_ed25519 id_ed25519; do
  [ -f "$demo/$key" ] || ssh-keygen -q -t ed25519 -N '' -C "mlflow-demo $key" -f "$demo/$key"
done
# The one step a real server has already: an admin key Ansible can log in with.
docker exec -i "$target" sh -c 'install -d -m 700 /root/.ssh && k=$(cat) &&
  { grep -qxF "$k" /root/.ssh/authorized_keys 2>/dev/null || echo "$k" >>/root/.ssh/authorized_keys; }' \
  <"$demo/admin_ed25519.pub"

port=${MLFLOW_DEMO_PORT:-5000}
if ! python -c 'import socket, sys; socket.create_server(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; then
  taken=$port
  port=$(python -c 'import socket; print(socket.create_server(("127.0.0.1", 0)).getsockname()[1])')
  step "demo: local port $taken is taken; the tunnel uses $port instead (MLFLOW_DEMO_PORT picks another)"
fi

user=$(id -un)
cat >"$demo/inventory.yml" <<EOF
# Written by scripts/demo.sh; removed by \`bash scripts/demo.sh down\`.
mlflow_servers:
  hosts:
    mlflow-demo:
      ansible_host: $address
      ansible_user: root
      ansible_ssh_private_key_file: $demo/admin_ed25519
      ansible_ssh_common_args: -o UserKnownHostsFile=$demo/known_hosts -o StrictHostKeyChecking=accept-new
      # ansible.cfg's ssh_args without -C: the target is on this machine, and compressing the
      # 1 GB image archive took 2 minutes where the plain copy takes 17 s.
      ansible_ssh_args: -o ControlMaster=auto -o ControlPersist=60s
      mlflow_server_image: mlops/mlflow:3.17.2
      mlflow_server_image_archive: $root/.cache/images/mlflow-3.17.2.tar
      # MLflow's job runner (GenAI scorers, evaluation): the demo uses none of it.
      mlflow_server_job_execution: false
mlflow_clients:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: $root/.venv/bin/python
all:
  vars:
    mlflow_team_manage_accounts: true
    mlflow_team:
      - name: $user
        pc: localhost
        local_user: $user
        server_user: researcher
        public_key: $(cat "$demo/id_ed25519.pub")
        host_alias: $alias
        local_port: $port
        identity_file: $demo/id_ed25519
        ssh_config_path: $ssh_config
        ssh_options:
          UserKnownHostsFile: $demo/known_hosts
EOF

step "demo: deploying MLflow to $address over SSH: ansible-playbook site.yml -i demo/inventory.yml" \
  "(job runner off: mlflow_server_job_execution=false)"
run site ansible-playbook site.yml -i "$demo/inventory.yml"

step "demo: onboarding $user: ssh config Host block in $ssh_config, then a health check through the tunnel"
run onboard ansible-playbook playbooks/onboard.yml -i "$demo/inventory.yml"
sed -n 's/^ *"msg": "\(.*: OK\. .*\)"$/\1/p' "$demo/logs/onboard.log" | while IFS= read -r line; do step "demo: $line"; done

step "demo: opening the tunnel: ssh -F $ssh_config $alias -fN"
# The control socket lets `down` close exactly this tunnel.
ssh -F "$ssh_config" -o ControlMaster=yes -o ControlPath="$control" "$alias" -fN
step "demo: 127.0.0.1:$port now reaches MLflow on the target's 127.0.0.1:500"

step "demo: logging a sample training run (scripts/demo_train.py)"
MLFLOW_TRACKING_URI="http://127.0.0.1:$port" watch "demo: training run" "$demo/logs/train.log" \
  python scripts/demo_train.py || exit 1
grep -aE '^(run|open) ' "$demo/logs/train.log"

step "demo: done"
cat <<EOF
MLflow UI:        http://127.0.0.1:$port
In your code:     export MLFLOW_TRACKING_URI=http://127.0.0.1:$port
Tunnel:           open now; after a reboot: ssh -F $ssh_config $alias -fN
Remove the demo:  bash scripts/demo.sh down
EOF
