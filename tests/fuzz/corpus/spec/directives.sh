#!/bin/bash
#SBATCH -J render --partition=express -t 1-02:30
#SBATCH -N 2 -c 2 --mem=512M -o out.txt -e out.txt
#PBS -l walltime=01:00:00,select=3:ncpus=2:mem=512mb
#VJOB --sim-runtime 1s --name "a b"
# comment
srun ./render
