// `cove completion bash|zsh|fish` prints a completion script for the shell.
// The script is made from the CLI11 definition itself, so it completes every
// command, subcommand and flag there is and none that has gone. Machine names
// come from coved at completion time, through the hidden
// `cove __complete-machines`.
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "client/commands.h"

namespace cove::client {
namespace {

constexpr int kManyMachines = -1;

struct Flag {
  std::vector<std::string> names;  // as typed: "-f", "--force"
  bool takes_value = false;
  std::string description;
};

// One command of the tree, as the scripts see it.
struct Command {
  std::string path;                // the words that reach it: "cove", "cove image build"
  std::vector<std::string> words;  // what names it after its parent: its name, then aliases
  std::string description;
  std::vector<size_t> children;  // indexes into the tree
  std::vector<Flag> flags;
  int machine_args = 0;              // leading arguments that name machines, or kManyMachines
  std::vector<std::string> choices;  // what its first argument may be, when that is fixed
  bool file_args = false;            // it takes other arguments (paths, a command): files
};

// Whether a command's first positional names machines. The commands say so
// by a convention: a first positional called "name" or "names" names a
// machine, except in `create`, which makes one, and under `image`, whose names
// are images'.
int MachineArgs(const std::string& path, const CLI::Option& first) {
  if (path == "cove create" || path.starts_with("cove image")) return 0;
  if (first.get_name() == "names") return kManyMachines;
  return first.get_name() == "name" ? 1 : 0;
}

// The values a positional's help lists, from an IsMember check: "{a,b,c}".
std::vector<std::string> Choices(const CLI::Option& opt) {
  const std::string type = opt.get_type_name();
  const size_t open = type.find(":{");
  if (open == std::string::npos || !type.ends_with('}')) return {};
  return absl::StrSplit(type.substr(open + 2, type.size() - open - 3), ',');
}

// Appends `app` and, after it, its subcommands but the hidden ones (group "").
size_t Collect(const CLI::App& app, const std::string& path, std::vector<Command>& tree) {
  const size_t index = tree.size();
  Command cmd;
  cmd.path = path;
  cmd.words = {app.get_name()};
  cmd.description = app.get_description();
  for (const auto& alias : app.get_aliases()) cmd.words.push_back(alias);
  bool first_positional = true;
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->get_group().empty()) continue;
    if (opt->nonpositional()) {
      Flag flag;
      flag.takes_value = opt->get_items_expected_max() > 0;
      flag.description = opt->get_description();
      for (const auto& s : opt->get_snames()) flag.names.push_back("-" + s);
      for (const auto& l : opt->get_lnames()) flag.names.push_back("--" + l);
      cmd.flags.push_back(std::move(flag));
    } else if (first_positional) {
      first_positional = false;
      cmd.machine_args = MachineArgs(path, *opt);
      cmd.choices = Choices(*opt);
      cmd.file_args = cmd.machine_args == 0 && cmd.choices.empty();
    } else {
      cmd.file_args = true;
    }
  }
  tree.push_back(std::move(cmd));
  for (const CLI::App* sub :
       app.get_subcommands([](const CLI::App* s) { return !s->get_group().empty(); })) {
    const size_t child = Collect(*sub, path + " " + sub->get_name(), tree);
    tree[index].children.push_back(child);
  }
  return index;
}

std::string ShQuote(const std::string& s) {
  return "'" + absl::StrReplaceAll(s, {{"'", "'\\''"}}) + "'";
}

std::string FishQuote(const std::string& s) {
  return "'" + absl::StrReplaceAll(s, {{"\\", "\\\\"}, {"'", "\\'"}}) + "'";
}

// What the lookup functions in the scripts print for a command.
using Column = std::function<std::vector<std::string>(const Command&)>;

Column Subcommands(const std::vector<Command>& tree) {
  return [&tree](const Command& cmd) {
    std::vector<std::string> names;
    for (size_t child : cmd.children) names.push_back(tree[child].words.front());
    return names;
  };
}

std::vector<std::string> AllFlags(const Command& cmd) {
  std::vector<std::string> names;
  for (const Flag& flag : cmd.flags)
    names.insert(names.end(), flag.names.begin(), flag.names.end());
  return names;
}

std::vector<std::string> ValueFlags(const Command& cmd) {
  std::vector<std::string> names;
  for (const Flag& flag : cmd.flags)
    if (flag.takes_value) names.insert(names.end(), flag.names.begin(), flag.names.end());
  return names;
}

std::vector<std::string> MachineArgsColumn(const Command& cmd) {
  if (cmd.machine_args == 0) return {};
  return {cmd.machine_args == kManyMachines ? "many" : std::to_string(cmd.machine_args)};
}

std::vector<std::string> ChoicesColumn(const Command& cmd) { return cmd.choices; }

std::vector<std::string> FileArgsColumn(const Command& cmd) {
  return cmd.file_args ? std::vector<std::string>{"1"} : std::vector<std::string>{};
}

// `NAME PATH` echoes the column's words for the command at PATH, on one line.
void EmitShLookup(std::ostream& out, const std::string& name, const std::string& what,
                  const std::vector<Command>& tree, Column column) {
  out << name << "() {  # PATH: " << what << "\n  case $1 in\n";
  for (const Command& cmd : tree) {
    if (auto words = column(cmd); !words.empty())
      out << "    " << ShQuote(cmd.path) << ") echo " << ShQuote(absl::StrJoin(words, " "))
          << " ;;\n";
  }
  out << "  esac\n}\n\n";
}

// `NAME PATH` sets reply to NAME:DESCRIPTION pairs, for zsh's _describe.
void EmitZshLookup(
    std::ostream& out, const std::string& name, const std::string& what,
    const std::vector<Command>& tree,
    const std::function<std::vector<std::pair<std::string, std::string>>(const Command&)>& column) {
  out << name << "() {  # PATH: sets reply to " << what << "\n  case $1 in\n";
  for (const Command& cmd : tree) {
    std::vector<std::string> pairs;
    for (const auto& [word, description] : column(cmd))
      pairs.push_back(ShQuote(absl::StrReplaceAll(word, {{":", "\\:"}}) + ":" + description));
    if (!pairs.empty())
      out << "    " << ShQuote(cmd.path) << ") reply=(" << absl::StrJoin(pairs, " ") << ") ;;\n";
  }
  out << "    *) reply=() ;;\n  esac\n}\n\n";
}

// The same for fish, one word a line.
void EmitFishLookup(std::ostream& out, const std::string& name, const std::string& what,
                    const std::vector<Command>& tree, Column column) {
  out << "function " << name << " --description " << FishQuote(what)
      << " --argument-names cmdpath\n    switch $cmdpath\n";
  for (const Command& cmd : tree) {
    std::vector<std::string> words = column(cmd);
    for (auto& word : words) word = FishQuote(word);
    if (!words.empty())
      out << "        case " << FishQuote(cmd.path) << "\n            printf '%s\\n' "
          << absl::StrJoin(words, " ") << "\n";
  }
  out << "    end\nend\n\n";
}

// The functions bash and zsh share. A path is the command's words, as
// Command::path.
void EmitShData(const std::vector<Command>& tree, std::ostream& out) {
  out << "_cove_sub() {  # PATH WORD: the path of PATH's subcommand named WORD\n"
         "  case \"$1/$2\" in\n";
  for (const Command& cmd : tree) {
    for (size_t child : cmd.children) {
      std::vector<std::string> keys;
      for (const auto& word : tree[child].words) keys.push_back(ShQuote(cmd.path + "/" + word));
      out << "    " << absl::StrJoin(keys, " | ") << ") echo " << ShQuote(tree[child].path)
          << " ;;\n";
    }
  }
  out << "    *) return 1 ;;\n  esac\n}\n\n";
  EmitShLookup(out, "_cove_value_flags", "the flags that take a value", tree, ValueFlags);
  EmitShLookup(out, "_cove_machine_args", "how many leading arguments name machines (or many)",
               tree, MachineArgsColumn);
  EmitShLookup(out, "_cove_choices", "what its first argument may be, when that is fixed", tree,
               ChoicesColumn);
  EmitShLookup(out, "_cove_file_args", "1 when it takes other arguments (paths, a command)", tree,
               FileArgsColumn);
}

// Walks the words before the cursor: sets cmdpath (the command they reach),
// args (how many arguments it has), dashdash (1 after `--`) and value (1 when
// the word being completed is a flag's value). WORDS and CWORD name the
// shell's arrays; bash's start at 0, zsh's at 1.
constexpr const char* kShWalk = R"sh(  local word sub
  cmdpath=cove args=0 dashdash=0 value=0
  local -i i=$((first + 1))
  while ((i < cword)); do
    word=${words[i]}
    if ((dashdash)); then
      args=$((args + 1))
    elif [[ $word == -- ]]; then
      dashdash=1
    elif [[ $word == -* ]]; then
      if [[ " $(_cove_value_flags "$cmdpath") " == *" $word "* ]]; then
        ((i + 1 < cword)) && [[ ${words[i + 1]} == = ]] && i+=1
        i+=1
        ((i < cword)) || value=1
      fi
    elif ((args == 0)) && sub=$(_cove_sub "$cmdpath" "$word"); then
      cmdpath=$sub
    else
      args=$((args + 1))
    fi
    i+=1
  done
)sh";

std::string BashScript(const std::vector<Command>& tree) {
  std::ostringstream out;
  out << "# bash completion for cove, made by `cove completion bash` from its commands.\n\n";
  EmitShData(tree, out);
  EmitShLookup(out, "_cove_subcommands", "its subcommands", tree, Subcommands(tree));
  EmitShLookup(out, "_cove_flags", "its flags", tree, AllFlags);
  out << "_cove() {\n"
         "  local -a words=(\"${COMP_WORDS[@]}\")\n"
         "  local -i first=0 cword=$COMP_CWORD\n"
         "  local cmdpath args dashdash value cur=${COMP_WORDS[COMP_CWORD]}\n"
      << kShWalk << R"sh(  COMPREPLY=()
  local candidates=""
  if ((dashdash || value)); then
    compopt -o default 2>/dev/null
    return 0
  elif [[ $cur == -* ]]; then
    candidates=$(_cove_flags "$cmdpath")
  elif [[ -n $(_cove_subcommands "$cmdpath") ]]; then
    candidates=$(_cove_subcommands "$cmdpath")
  elif ((args == 0)) && [[ -n $(_cove_choices "$cmdpath") ]]; then
    candidates=$(_cove_choices "$cmdpath")
  else
    local want
    want=$(_cove_machine_args "$cmdpath")
    if [[ $want == many ]] || ((args < ${want:-0})); then
      local cove=${COMP_WORDS[0]}
      type -P "$cove" >/dev/null || cove=cove
      candidates=$("$cove" __complete-machines 2>/dev/null)
    elif [[ -n $(_cove_file_args "$cmdpath") ]]; then
      compopt -o default 2>/dev/null
      return 0
    fi
  fi
  mapfile -t COMPREPLY < <(compgen -W "$candidates" -- "$cur")
}

complete -F _cove cove
)sh";
  return out.str();
}

std::string ZshScript(const std::vector<Command>& tree) {
  std::ostringstream out;
  out << "#compdef cove\n"
         "# zsh completion for cove, made by `cove completion zsh` from its commands.\n\n";
  EmitShData(tree, out);
  EmitZshLookup(out, "_cove_subcommands", "SUBCOMMAND:DESCRIPTION", tree,
                [&tree](const Command& cmd) {
                  std::vector<std::pair<std::string, std::string>> pairs;
                  for (size_t child : cmd.children)
                    pairs.emplace_back(tree[child].words.front(), tree[child].description);
                  return pairs;
                });
  EmitZshLookup(out, "_cove_flags", "FLAG:DESCRIPTION", tree, [](const Command& cmd) {
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const Flag& flag : cmd.flags)
      for (const auto& name : flag.names) pairs.emplace_back(name, flag.description);
    return pairs;
  });
  out << "_cove() {\n"
         "  local -i first=1 cword=$CURRENT\n"
         "  local cmdpath args dashdash value cur=${words[CURRENT]}\n"
         "  local -a reply candidates\n"
      << kShWalk << R"sh(  if ((dashdash || value)); then
    _files
  elif [[ $cur == -* ]]; then
    _cove_flags "$cmdpath"
    candidates=("${reply[@]}")
    _describe -t options option candidates
  else
    _cove_subcommands "$cmdpath"
    candidates=("${reply[@]}")
    if ((${#candidates})); then
      _describe -t commands command candidates
    elif ((args == 0)) && [[ -n $(_cove_choices "$cmdpath") ]]; then
      compadd -- ${=$(_cove_choices "$cmdpath")}
    else
      local want=$(_cove_machine_args "$cmdpath")
      if [[ $want == many ]] || ((args < ${want:-0})); then
        compadd -- ${(f)"$(${words[1]} __complete-machines 2>/dev/null)"}
      elif [[ -n $(_cove_file_args "$cmdpath") ]]; then
        _files
      fi
    fi
  fi
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _cove "$@"
else
  compdef _cove cove
fi
)sh";
  return out.str();
}

std::string FishScript(const std::vector<Command>& tree) {
  std::ostringstream out;
  out << "# fish completion for cove, made by `cove completion fish` from its commands.\n\n"
         "function __cove_sub --argument-names cmdpath word\n"
         "    switch \"$cmdpath/$word\"\n";
  for (const Command& cmd : tree) {
    for (size_t child : cmd.children) {
      std::vector<std::string> keys;
      for (const auto& word : tree[child].words) keys.push_back(FishQuote(cmd.path + "/" + word));
      out << "        case " << absl::StrJoin(keys, " ") << "\n            echo "
          << FishQuote(tree[child].path) << "\n";
    }
  }
  out << "        case '*'\n            return 1\n    end\nend\n\n";
  EmitFishLookup(out, "__cove_value_flags", "the flags that take a value", tree, ValueFlags);
  EmitFishLookup(out, "__cove_subcommands", "its subcommands", tree, Subcommands(tree));
  EmitFishLookup(out, "__cove_machine_args", "how many leading arguments name machines (or many)",
                 tree, MachineArgsColumn);
  EmitFishLookup(out, "__cove_choices", "what its first argument may be, when that is fixed", tree,
                 ChoicesColumn);
  EmitFishLookup(out, "__cove_file_args", "1 when it takes other arguments (paths, a command)",
                 tree, FileArgsColumn);
  // __cove_walk prints the command the words before the cursor reach, how
  // many arguments it has, and 1 when the word being completed is past `--`
  // or a flag's value, else 0.
  out << R"sh(function __cove_walk
    set -l words (commandline -opc)
    set -e words[1]
    set -l cmdpath cove
    set -l args 0
    set -l dashdash 0
    set -l value 0
    set -l sub
    for word in $words
        if test $value = 1
            set value 0
        else if test $dashdash = 1
            set args (math $args + 1)
        else if test "$word" = --
            set dashdash 1
        else if string match -q -- '-*' $word
            contains -- $word (__cove_value_flags $cmdpath); and set value 1
        else if test $args = 0; and set sub (__cove_sub $cmdpath $word)
            set cmdpath $sub
        else
            set args (math $args + 1)
        end
    end
    test $dashdash = 1; and set value 1
    printf '%s\n' $cmdpath $args $value
end

function __cove_at --argument-names want
    set -l state (__cove_walk)
    test "$state[1]" = "$want"; and test $state[3] = 0
end

function __cove_wants_machine
    set -l state (__cove_walk)
    test $state[3] = 0; or return 1
    set -l want (__cove_machine_args $state[1])
    set -q want[1]; and begin
        test $want = many; or test $state[2] -lt $want
    end
end

function __cove_wants_files
    set -l state (__cove_walk)
    test $state[3] = 1; and return 0
    __cove_wants_machine; and return 1
    set -l choices (__cove_choices $state[1])
    test (count $choices) -gt 0 -a $state[2] = 0; and return 1
    set -l file_args (__cove_file_args $state[1])
    set -q file_args[1]
end

function __cove_machines
    set -l cove (commandline -opc)[1]
    command -q $cove; or set cove cove
    command $cove __complete-machines 2>/dev/null
end

complete -c cove -f
complete -c cove -n __cove_wants_machine -a '(__cove_machines)'
complete -c cove -n __cove_wants_files -F
)sh";
  for (const Command& cmd : tree) {
    const std::string at = "-n " + FishQuote("__cove_at " + FishQuote(cmd.path));
    for (size_t child : cmd.children)
      out << "complete -c cove " << at << " -a " << FishQuote(tree[child].words.front()) << " -d "
          << FishQuote(tree[child].description) << "\n";
    if (!cmd.choices.empty())
      out << "complete -c cove " << at << " -a " << FishQuote(absl::StrJoin(cmd.choices, " "))
          << "\n";
    for (const Flag& flag : cmd.flags) {
      out << "complete -c cove " << at;
      for (const auto& name : flag.names)
        out << (name.starts_with("--") ? " -l " : " -s ")
            << name.substr(name.find_first_not_of('-'));
      if (flag.takes_value) out << " -r -F";
      out << " -d " << FishQuote(flag.description) << "\n";
    }
  }
  return out.str();
}

// `cove __complete-machines`: machine names, one a line. It runs on every
// TAB, so it answers at once or not at all: when coved is not running, or
// does not answer within 1 s, it prints nothing and succeeds, and it never
// starts coved (which Context::machines() would).
void PrintMachineNames() {
  auto home = ResolveCoveHome();
  if (!home.ok()) return;
  const std::string socket = HomeLayout{*home}.socket();
  std::error_code ec;
  if (!std::filesystem::exists(socket, ec)) return;
  auto stub = cove::v1::Machines::NewStub(
      grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
  grpc::ClientContext call;
  call.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
  cove::v1::ListMachinesResponse resp;
  if (!stub->List(&call, {}, &resp).ok()) return;
  for (const auto& m : resp.machines()) std::cout << m.name() << "\n";
}

}  // namespace

void RegisterCompletion(CLI::App& app, Context& /*ctx*/, int& /*exit_code*/) {
  auto* cmd = app.add_subcommand("completion", "Print a shell completion script: bash, zsh, fish");
  auto shell = std::make_shared<std::string>();
  cmd->add_option("shell", *shell, "The shell")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh", "fish"}));
  cmd->callback([&app, shell]() {
    std::vector<Command> tree;
    Collect(app, "cove", tree);
    if (*shell == "bash") std::cout << BashScript(tree);
    if (*shell == "zsh") std::cout << ZshScript(tree);
    if (*shell == "fish") std::cout << FishScript(tree);
  });

  app.add_subcommand("__complete-machines", "Machine names, for the completion scripts")
      ->group("")
      ->callback(PrintMachineNames);
}

}  // namespace cove::client
